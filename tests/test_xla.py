"""funnel_tf.xla: the host-XLA probe and the TF-kernel fallback the TPU build of TF relies on.

`FUNNEL_TF_HOST_XLA=0` makes this build behave as tensorflow-tpu does (no XLA:CPU): the fused
regions, the fused update and a `jit_compile=True` train step must then run on TF's kernels and give
the same numbers as the XLA-fused path.
"""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from funnel_tf import xla
from funnel_tf.config import FunnelConfig
from funnel_tf.modeling.model import FunnelModel

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs")


@pytest.fixture
def no_host_xla(monkeypatch):
    """This process as the TPU build sees it: no XLA:CPU backend."""
    monkeypatch.setenv(xla.ENV, "0")
    xla.reset_for_tests()
    yield
    monkeypatch.delenv(xla.ENV)
    xla.reset_for_tests()


def test_probe_matches_a_real_compile():
    """The probe says True exactly when a jit_compile function runs here (both builds)."""
    try:
        tf.function(lambda x: x * 2.0, jit_compile=True)(tf.constant(3.0))
        compiles = True
    except tf.errors.NotFoundError:
        compiles = False
    assert xla.host_has_xla() is compiles


def test_forced_fallback_turns_jit_off_and_warns_once(no_host_xla):
    assert not xla.host_has_xla() and not xla.can_jit()
    assert xla.effective_jit_compile(True, "probe step") is False
    assert xla.effective_jit_compile(False, "probe step") is False
    f = xla.function(lambda x: x + 1.0)
    assert float(f(tf.constant(1.0))) == 2.0
    assert f._jit_compile is False  # a plain tf.function on TF's kernels


def _tiny_model_and_inputs():
    """The tiny model with one layer per block (two blocks: the second one's first layer attends
    from pooled queries) and one decoder layer: every fused region, a third of the layers to trace
    and compile (a third block would repeat the second's paths)."""
    with open(os.path.join(CONFIGS, "tiny.json")) as f:
        cfg = dict(json.load(f))
    cfg.update(hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, vocab_size=101,
               block_sizes=[1, 1], block_repeats=[1, 1], num_decoder_layers=1)
    keras.utils.set_random_seed(0)
    model = FunnelModel(FunnelConfig.from_dict(cfg))
    rng = np.random.default_rng(0)
    b, length = 2, 16
    mask = np.ones([b, length], np.int32)
    mask[1, 11:] = 0
    types = np.zeros([b, length], np.int32)
    types[:, 6:] = 1
    x = {"input_ids": tf.constant(rng.integers(0, cfg["vocab_size"], [b, length]), tf.int32),
         "attention_mask": tf.constant(mask), "token_type_ids": tf.constant(types)}
    return model, x


def test_fallback_gives_the_fused_path_values_and_gradients(monkeypatch):
    """Training mode without dropout: unfused TF kernels (no XLA) == fused regions."""
    model, x = _tiny_model_and_inputs()

    def loss_and_grads():
        with tf.GradientTape() as tape:
            out = model(x, training=True)["last_hidden_state"]
            loss = tf.reduce_sum(tf.square(out)) * 1e-3
        return out, loss, tape.gradient(loss, model.trainable_variables)

    out_a, loss_a, g_a = tf.function(loss_and_grads)()
    monkeypatch.setenv(xla.ENV, "0")
    xla.reset_for_tests()
    try:
        out_b, loss_b, g_b = tf.function(loss_and_grads)()  # a fresh trace: plain ops
    finally:
        monkeypatch.delenv(xla.ENV)
        xla.reset_for_tests()
    np.testing.assert_allclose(out_a.numpy(), out_b.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(loss_a.numpy(), loss_b.numpy(), rtol=1e-5)
    for v, a, b in zip(model.trainable_variables, g_a, g_b):
        np.testing.assert_allclose(tf.convert_to_tensor(a).numpy(), tf.convert_to_tensor(b).numpy(),
                                   rtol=1e-4, atol=1e-6, err_msg=v.path)


def _trainer(tmp_path, jit_compile):
    """The loop on the toy objective (tests/engine/toy.py): the fallback is the loop's and the
    update's; the model's unfused kernels are test_fallback_gives_the_fused_path_values_and_gradients's."""
    from funnel_tf.engine.loop import LoopConfig, Trainer
    from funnel_tf.engine.optimization import make_optimizer
    from funnel_tf.engine.strategy import make_strategy
    from tests.engine import toy

    keras.utils.set_random_seed(1)
    return Trainer(make_strategy("default"), toy.ToyObjective(),
                   lambda vs: make_optimizer(vs, 1e-3), toy.dataset_fn(8),
                   LoopConfig(train_steps=3, global_batch_size=8, seq_len=toy.L, steps_per_loop=3,
                              log_every=1, save_every=0, model_dir=str(tmp_path),
                              jit_compile=jit_compile))


def test_jit_compile_train_step_falls_back_to_the_fused_update(tmp_path, no_host_xla):
    """jit_compile=True without XLA:CPU: the loop runs the TF-kernel step and still trains."""
    t = _trainer(tmp_path / "a", jit_compile=True)
    assert t.config.jit_compile is False
    result = t.train()
    assert result.step == 3
    assert all(np.isfinite(r["loss"]) for r in result.history)
