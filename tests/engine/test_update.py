"""The XLA-compiled update: the same step as clipping + AdamW on TF's kernels, skipped (and
reported) when the loss or the gradient is not finite, weight copies rewritten after the step."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from funnel_tf.engine.optimization import make_optimizer
from funnel_tf.engine.update import FusedUpdate
from funnel_tf.engine.weight_copies import WeightCopies


def _variables():
    rng = np.random.default_rng(0)
    return [keras.Variable(rng.normal(size=[300, 256]).astype(np.float32), name="kernel"),
            keras.Variable(rng.normal(size=[256]).astype(np.float32), name="bias")]


def _grads(scale=1.0):
    rng = np.random.default_rng(1)
    return [tf.constant(scale * rng.normal(size=[300, 256]), tf.float32),
            tf.constant(scale * rng.normal(size=[256]), tf.float32)]


def test_fused_update_equals_clip_then_optimizer_on_tf_kernels():
    fused_vars, plain_vars = _variables(), _variables()
    fused_opt = make_optimizer(fused_vars, 1e-2)
    plain_opt = make_optimizer(plain_vars, 1e-2)
    update = FusedUpdate(fused_opt, fused_vars, clip_norm=1.0)
    for step in range(3):
        grads = _grads(scale=step + 1.0)  # norms ~280 and more: clipping is active
        norm, finite = update(grads, [None, None], tf.constant(1.0))
        clipped, plain_norm = tf.clip_by_global_norm(grads, 1.0)
        plain_opt.apply(clipped, plain_vars)
        assert bool(finite)
        np.testing.assert_allclose(float(norm), float(plain_norm), rtol=1e-5)
    for a, b in zip(fused_vars, plain_vars):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    assert int(fused_opt.iterations.numpy()) == 3


@pytest.mark.parametrize("clip_norm", [1.0, 0.0])  # 0: the sum-based check, no norm
def test_nonfinite_loss_or_gradient_skips_the_step(clip_norm):
    variables = _variables()
    before = [v.numpy().copy() for v in variables]
    opt = make_optimizer(variables, 1e-2)
    update = FusedUpdate(opt, variables, clip_norm=clip_norm)
    _, finite = update(_grads(), [None, None], tf.constant(np.nan, tf.float32))
    assert not bool(finite)
    for value in (np.inf, -np.inf, np.nan):
        bad = _grads()
        bad[1] = tf.tensor_scatter_nd_update(bad[1], [[3]], [value])
        _, finite = update(bad, [None, None], tf.constant(1.0))
        assert not bool(finite), value
    # a non-finite bf16 gradient of a weight copy is caught too
    copy_grad = tf.tensor_scatter_nd_update(tf.zeros([300, 256], tf.bfloat16), [[1, 2]],
                                            tf.constant([np.nan], tf.bfloat16))
    _, finite = update([None, _grads()[1]], [copy_grad, None], tf.constant(1.0))
    assert not bool(finite)
    for v, b in zip(variables, before):
        np.testing.assert_array_equal(v.numpy(), b)
    assert int(opt.iterations.numpy()) == 0


def test_unclipped_update_returns_no_norm_and_applies():
    variables, reference = _variables(), _variables()
    update = FusedUpdate(make_optimizer(variables, 1e-2), variables, clip_norm=0.0)
    ref_opt = make_optimizer(reference, 1e-2)
    norm, finite = update(_grads(), [None, None], tf.constant(1.0))
    ref_opt.apply(_grads(), reference)
    assert norm is None and bool(finite)
    for a, b in zip(variables, reference):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7)


def test_gradients_through_copies_are_folded_in_and_copies_refreshed():
    """A variable's float32 gradient and its copy's bf16 gradient add up; after the step the
    copy holds bf16 of the new value."""
    variables, reference = _variables(), _variables()
    copies = WeightCopies(variables[:1])
    copies.read_ids = {id(variables[0])}  # as if the forward had read the kernel's copy
    update = FusedUpdate(make_optimizer(variables, 1e-2), variables, clip_norm=0.0,
                         weight_copies=copies)
    ref_opt = make_optimizer(reference, 1e-2)
    grads = _grads(1e-3)
    half = tf.cast(grads[0] / 2, tf.bfloat16)
    direct = [grads[0] - tf.cast(half, tf.float32), grads[1]]
    update(direct, [half, None], tf.constant(1.0))
    ref_opt.apply(grads, reference)
    for a, b in zip(variables, reference):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(copies.copies[0].numpy(),
                                  tf.cast(variables[0], tf.bfloat16).numpy())
