"""AdamW + schedule + layer-wise LR decay: values, exclusions, and no double all-reduce."""

import numpy as np
import pytest
import keras
import tensorflow as tf

from funnel_tf.engine.optimization import (
    FunnelAdamW, WarmupLinearDecay, decayed_variable_paths, layer_index, layerwise_lr_scales,
    make_optimizer)


def test_schedule_warmup_then_linear_decay():
    s = WarmupLinearDecay(peak=1e-3, warmup_steps=10, total_steps=110)
    lr = [float(s(k)) for k in (0, 4, 9, 10, 60, 110, 500)]
    np.testing.assert_allclose(lr, [1e-4, 5e-4, 1e-3, 1e-3, 5e-4, 0.0, 0.0], rtol=1e-6, atol=1e-12)
    s2 = WarmupLinearDecay(peak=2.0, warmup_steps=0, total_steps=4, end_ratio=0.5)
    np.testing.assert_allclose([float(s2(k)) for k in range(6)], [2, 1.75, 1.5, 1.25, 1, 1])
    assert WarmupLinearDecay.from_config(s.get_config()).get_config() == s.get_config()
    with pytest.raises(ValueError, match="warmup_steps"):
        WarmupLinearDecay(1.0, 20, 10)


def test_layer_index_from_paths():
    assert layer_index("funnel_model/embeddings/word_embeddings") == 0
    assert layer_index("funnel/encoder/layer_0/attention/q/kernel") == 1
    assert layer_index("funnel/decoder/layer_13/ffn/dense/kernel") == 14
    assert layer_index("funnel/encoder/layer_3/layer_norm/gamma") == 4
    assert layer_index("lm_head/layer_norm/gamma") is None   # "layer_norm" is not a layer index
    assert layer_index("classifier/dense/kernel") is None


class _Var:
    def __init__(self, path):
        self.path = path


def test_layerwise_scales_top_layer_one_embeddings_smallest():
    vs = [_Var(p) for p in ("m/embeddings/w", "m/layer_0/k", "m/layer_1/k", "m/layer_2/k", "head/k")]
    scales = layerwise_lr_scales(vs, 0.5)
    assert scales == {"m/embeddings/w": 0.125, "m/layer_0/k": 0.25, "m/layer_1/k": 0.5,
                      "m/layer_2/k": 1.0, "head/k": 1.0}
    assert set(layerwise_lr_scales(vs, 1.0).values()) == {1.0}


def _toy_vars():
    dense = keras.layers.Dense(4, name="layer_0")
    dense.build((None, 3))
    norm = keras.layers.LayerNormalization(name="layer_norm")
    norm.build((None, 4))
    return dense, norm


def test_weight_decay_skips_biases_and_layernorm():
    dense, norm = _toy_vars()
    variables = dense.trainable_variables + norm.trainable_variables
    opt = make_optimizer(variables, learning_rate=0.1, weight_decay=0.5)
    assert decayed_variable_paths(opt, variables) == [dense.kernel.path]
    before = [v.numpy().copy() for v in variables]
    opt.apply([tf.zeros_like(v) for v in variables], variables)
    after = [v.numpy() for v in variables]
    np.testing.assert_allclose(after[0], before[0] * (1 - 0.1 * 0.5), rtol=1e-6)  # kernel decayed
    for b, a in zip(before[1:], after[1:]):
        np.testing.assert_array_equal(a, b)


def test_lr_scale_scales_the_step_where_gradient_scaling_would_not():
    # Two identical variables, identical gradients; one has LR factor 0.25.
    a = keras.Variable(np.ones(3, np.float32), name="a")
    b = keras.Variable(np.ones(3, np.float32), name="b")
    opt = FunnelAdamW(learning_rate=0.01, weight_decay=0.0, beta_2=0.99, epsilon=1e-6,
                      lr_scales={b.path: 0.25})
    opt.build([a, b])
    g = tf.constant([0.3, -0.2, 0.1])
    for _ in range(3):
        opt.apply([g, g], [a, b])
    da, db = 1 - a.numpy(), 1 - b.numpy()
    np.testing.assert_allclose(db, 0.25 * da, rtol=1e-5)
    # The original's alternative (scale the gradient) is cancelled by Adam's normalisation.
    c = keras.Variable(np.ones(3, np.float32), name="c")
    plain = FunnelAdamW(learning_rate=0.01, weight_decay=0.0, beta_2=0.99, epsilon=1e-6)
    plain.build([c])
    for _ in range(3):
        plain.apply([0.25 * g], [c])
    np.testing.assert_allclose(1 - c.numpy(), da, rtol=1e-3)


def test_unknown_lr_scale_path_is_an_error():
    a = keras.Variable(np.ones(2, np.float32), name="a")
    opt = FunnelAdamW(learning_rate=0.1, weight_decay=0.0, lr_scales={"nope/x": 0.5})
    with pytest.raises(ValueError, match="nope/x"):
        opt.build([a])


def test_pre_reduced_gradients_are_not_summed_again(mirrored):
    """Under MirroredStrategy a pre-reduced gradient must give the single-replica update."""
    strategy = mirrored

    def run(pre_reduced):
        with strategy.scope():
            v = keras.Variable(np.zeros(2, np.float32), name="v")
            opt = FunnelAdamW(learning_rate=0.1, weight_decay=0.0, epsilon=1e-3, beta_2=0.99,
                              gradients_pre_reduced=pre_reduced)
            opt.build([v])

        @tf.function
        def step():
            def fn():
                opt.apply([tf.constant([1e-3, -2e-3])], [v])
            strategy.run(fn)
        step(); step()
        return v.numpy()

    ref = keras.Variable(np.zeros(2, np.float32), name="ref")
    single = FunnelAdamW(learning_rate=0.1, weight_decay=0.0, epsilon=1e-3, beta_2=0.99)
    single.build([ref])
    single.apply([tf.constant([1e-3, -2e-3])], [ref])
    single.apply([tf.constant([1e-3, -2e-3])], [ref])
    np.testing.assert_allclose(run(True), ref.numpy(), rtol=1e-6)
    # Without the flag Keras sums both replicas' copies: a doubled gradient, visible through epsilon.
    assert not np.allclose(run(False), ref.numpy(), rtol=1e-6)
