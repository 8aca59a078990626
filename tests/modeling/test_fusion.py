"""XLA-fused elementwise regions: same values and gradients as the plain TF math they replace."""

import importlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from funnel_tf.config import FunnelConfig
from funnel_tf.modeling.activations import get_activation
from funnel_tf.modeling.tf_kernels import fusion
from funnel_tf.modeling.tf_kernels.fusion import bias_activation, dropout_add_norm, fused
from funnel_tf.xla import in_xla_context
from funnel_tf.modeling.model import FunnelModel

# the module (the package's `attention_probs` name is its adapter function)
tf_attention_probs = importlib.import_module("funnel_tf.modeling.tf_kernels.attention_probs")


def _value_and_grads(f, xs, dy):
    with tf.GradientTape() as tape:
        tape.watch(xs)
        out = f(*xs)
    return out, tape.gradient(out, xs, output_gradients=dy)


@pytest.mark.parametrize("act", ["gelu_new", "gelu", "relu", "silu"])
def test_bias_activation_matches_plain(act):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=[6, 16]), tf.float32)
    b = tf.constant(rng.normal(size=[16]), tf.float32)
    dy = tf.constant(rng.normal(size=[6, 16]), tf.float32)
    ours = _value_and_grads(tf.function(lambda x, b: bias_activation(x, b, act)), [x, b], dy)
    ref = _value_and_grads(lambda x, b: get_activation(act)(x + b), [x, b], dy)
    np.testing.assert_allclose(ours[0].numpy(), ref[0].numpy(), atol=1e-6)
    for a, r in zip(ours[1], ref[1]):
        np.testing.assert_allclose(a.numpy(), r.numpy(), atol=1e-5)


def test_dropout_add_norm_matches_keras_layer_norm():
    rng = np.random.default_rng(0)
    x, res = (tf.constant(rng.normal(size=[5, 12]), tf.float32) for _ in range(2))
    gamma = tf.constant(rng.normal(size=[12]), tf.float32)
    beta = tf.constant(rng.normal(size=[12]), tf.float32)
    dy = tf.constant(rng.normal(size=[5, 12]), tf.float32)
    ln = keras.layers.LayerNormalization(epsilon=1e-9)
    ln.build((None, 12))
    ln.gamma.assign(gamma)
    ln.beta.assign(beta)
    bias = tf.constant(rng.normal(size=[12]), tf.float32)
    ours = _value_and_grads(tf.function(lambda x, r, g, b, c: dropout_add_norm(x, r, g, b, None, 0.1, 1e-9, c)),
                            [x, res, gamma, beta, bias], dy)
    ref = _value_and_grads(lambda x, r, g, b, c: keras.ops.layer_normalization(x + c + r, g, b, epsilon=1e-9),
                           [x, res, gamma, beta, bias], dy)
    np.testing.assert_allclose(ours[0].numpy(), ln(x + bias + res).numpy(), atol=1e-5)
    for a, r in zip(ours[1], ref[1]):
        np.testing.assert_allclose(a.numpy(), r.numpy(), atol=1e-4)


def test_dropout_add_norm_drops_and_rescales():
    x = tf.ones([64, 256])
    zeros = tf.zeros([64, 256])
    out = tf.function(lambda: dropout_add_norm(x, zeros, tf.ones([256]), zeros[0], tf.constant([1, 2]),
                                               0.25, 1e-9))().numpy()
    # Kept entries are 1/(1-rate), dropped 0; LayerNorm of a 0/c row is +-1 up to eps: check the mask.
    frac_dropped = (out < 0).mean()
    assert 0.2 < frac_dropped < 0.3


def test_fused_gradient_is_the_recomputed_autodiff_and_non_float_args_get_none():
    f = fused(lambda x, n: tf.sin(x) * tf.cast(n, tf.float32), ("test", "sin_times"))
    x = tf.constant([0.1, 0.7, 2.0])
    n = tf.constant(3)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.function(f)(x, n)
    np.testing.assert_allclose(tape.gradient(y, x).numpy(), 3 * np.cos([0.1, 0.7, 2.0]), rtol=1e-6)


@pytest.mark.needs_host_xla
def test_in_xla_context():
    assert not in_xla_context()
    assert tf.function(lambda: tf.constant(in_xla_context()), jit_compile=True)().numpy()
    assert not tf.function(lambda: tf.constant(in_xla_context()))().numpy()


GRAD_CFG = FunnelConfig(vocab_size=50, block_sizes=[1, 1], num_decoder_layers=1, d_model=32, n_head=4, d_head=8,
                        d_inner=64, hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
                        initializer_std=0.02)


def _grad_inputs():
    """[2, 16] ids (row 1 padded from 12), two segments, and a fixed [2, 16, d_model] projection."""
    rng = np.random.default_rng(0)
    x = {"input_ids": tf.constant(rng.integers(0, 50, [2, 16]), tf.int32),
         "attention_mask": tf.constant([[1] * 16, [1] * 12 + [0] * 4], tf.int32),
         "token_type_ids": tf.constant([[0] * 8 + [1] * 8] * 2, tf.int32)}
    return x, tf.constant(rng.normal(size=[2, 16, 32]), tf.float32)


def _out_and_grads(model, jit_compile=False):
    """Training mode (dropout rates 0): the last hidden state and the gradients of a random
    projection of it ((out - c)^2 would lie in the span LayerNorm's backward removes)."""
    x, proj = _grad_inputs()

    @tf.function(jit_compile=jit_compile)
    def f():
        with tf.GradientTape() as tape:
            out = model(x, training=True)["last_hidden_state"]
            loss = tf.reduce_sum(tf.cast(out, tf.float32) * proj)
        return out, tape.gradient(loss, model.trainable_variables)
    out, grads = f()
    return out, [tf.convert_to_tensor(g).numpy() for g in grads]


@pytest.fixture(scope="module")
def float32_on_tf_kernels():
    """One float32 model of GRAD_CFG and its (output, gradients) through the fused regions and
    hand-written backward (a tf.function without jit_compile): the reference of both tests below."""
    model = FunnelModel(GRAD_CFG)
    out, grads = _out_and_grads(model)
    return model, out.numpy(), grads


@pytest.mark.needs_host_xla
def test_model_gradients_equal_on_tf_kernels_and_under_xla(float32_on_tf_kernels):
    """The whole model, fp32, training mode without dropout: the fused regions and hand-written
    backward (TF kernels) give XLA autodiff's gradients. One layer per block (two blocks: one
    pooling) and one decoder layer: every kernel, few layers to compile."""
    model, out_tf, g_tf = float32_on_tf_kernels
    out_xla, g_xla = _out_and_grads(model, jit_compile=True)
    np.testing.assert_allclose(out_tf, out_xla.numpy(), atol=1e-5)
    for v, a, r in zip(model.trainable_variables, g_tf, g_xla):
        np.testing.assert_allclose(a, r, atol=2e-5 * max(1.0, np.abs(r).max()), err_msg=v.path)


def test_eager_calls_compile_no_kernel_and_match_the_fused_graph(float32_on_tf_kernels, monkeypatch):
    """An eager call (here under a tape) runs the plain TF math of every fused region: no XLA kernel
    is traced for its shapes (each new length used to compile one per region), and its values and
    gradients are the fused graph's."""
    model, out_tf, g_tf = float32_on_tf_kernels
    monkeypatch.setattr(fusion, "_CACHE", {})  # fresh kernels: their tracing counts start at 0

    def no_kernels(*args):
        raise AssertionError("an eager call built the attention tail's XLA kernels")
    monkeypatch.setattr(tf_attention_probs, "_kernels", no_kernels)
    x, proj = _grad_inputs()
    with tf.GradientTape() as tape:
        out = model(x, training=True)["last_hidden_state"]
        loss = tf.reduce_sum(out * proj)
    grads = tape.gradient(loss, model.trainable_variables)
    assert fusion._CACHE, "the eager call never reached the fused regions"
    assert [f.forward.experimental_get_tracing_count() + f.backward.experimental_get_tracing_count()
            for f in fusion._CACHE.values()] == [0] * len(fusion._CACHE)
    np.testing.assert_allclose(out.numpy(), out_tf, atol=1e-5)
    for v, a, r in zip(model.trainable_variables, grads, g_tf):
        np.testing.assert_allclose(tf.convert_to_tensor(a).numpy(), r, atol=2e-5 * max(1.0, np.abs(r).max()),
                                   err_msg=v.path)


def test_mixed_bfloat16_gradients_on_tf_kernels_close_to_float32(float32_on_tf_kernels):
    """The fused path under mixed_bfloat16 (what the engine runs on CPU with jit_compile off):
    bf16 outputs, float32 variable gradients, close to the float32 model's."""
    ref, out32, g32 = float32_on_tf_kernels
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = FunnelModel(GRAD_CFG)
        model.set_weights(ref.get_weights())
        out16, g16 = _out_and_grads(model)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert out16.dtype == tf.bfloat16
    assert all(g.dtype == np.float32 for g in g16)
    assert np.abs(tf.cast(out16, tf.float32).numpy() - out32).max() < 0.15
    flat16, flat32 = np.concatenate([g.ravel() for g in g16]), np.concatenate([g.ravel() for g in g32])
    assert np.linalg.norm(flat16 - flat32) < 0.05 * np.linalg.norm(flat32)
    top = np.abs(flat32).max()
    for v, a, r in zip(ref.trainable_variables, g16, g32):
        # Relative per variable, floored for gradients that are zero in exact arithmetic (e.g. the
        # key bias: softmax ignores a per-query constant) where bf16 leaves only round-off.
        assert np.abs(a - r).max() < 0.1 * max(np.abs(r).max(), 0.01 * top), v.path


def test_training_with_an_unknown_batch_size_in_the_graph():
    """Dropout masks for a [None, ...] graph input fall back to TF's kernels instead of failing."""
    cfg = FunnelConfig(vocab_size=50, block_sizes=[1, 1], num_decoder_layers=1, d_model=16, n_head=2, d_head=8,
                       d_inner=32)
    model = FunnelModel(cfg)
    spec = tf.TensorSpec([None, 8], tf.int32)

    @tf.function(input_signature=[spec, spec, spec])
    def f(ids, mask, types):
        out = model({"input_ids": ids, "attention_mask": mask, "token_type_ids": types},
                    training=True)["last_hidden_state"]
        return out

    ids = tf.ones([3, 8], tf.int32)
    out = f(ids, ids, tf.zeros_like(ids)).numpy()
    assert out.shape == (3, 8, 16) and np.isfinite(out).all()
