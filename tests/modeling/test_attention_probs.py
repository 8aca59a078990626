"""The attention score tail: hand-written gradient vs TF autodiff of the same math."""

import numpy as np
import pytest
import tensorflow as tf

from funnel_tf.modeling.attention_probs import relative_shift
from funnel_tf.modeling.tf_kernels.attention_probs import _probs, attention_probs, relative_unshift


def _inputs(shift, seed=0, n=2, b=3, lq=8, lk=8):
    rng = np.random.default_rng(seed)
    r = shift * lq + lk if shift else lk
    mask = np.ones([b, lk], np.float32)
    mask[0, -3:] = 0.0  # padded keys
    return dict(
        content=tf.constant(rng.normal(size=[n, b, lq, lk]), tf.float32),
        position=tf.constant(rng.normal(size=[n, b, lq, r]), tf.float32),
        tt_bias=tf.constant(rng.normal(size=[n, b, lq, 2]), tf.float32),
        token_type_mat=tf.constant(rng.random([b, lq, lk]) > 0.5),
        attention_mask=tf.constant(mask),
        cls_mask=tf.constant(rng.random([lq, lk]) > 0.2, tf.float32))


def _grads(f, x, dy):
    with tf.GradientTape() as tape:
        tape.watch([x["content"], x["position"], x["tt_bias"]])
        out = f()
    return out, tape.gradient(out, [x["content"], x["position"], x["tt_bias"]], output_gradients=dy)


@pytest.mark.parametrize("shift,lq,with_cls,rate", [(1, 8, True, 0.0), (2, 4, True, 0.0), (0, 8, False, 0.0),
                                                    (1, 8, True, 0.3)])
@pytest.mark.needs_host_xla
def test_custom_gradient_matches_autodiff(shift, lq, with_cls, rate):
    x = _inputs(shift, lq=lq)
    cls = x["cls_mask"][:lq] if with_cls else None
    seed = tf.constant([3, 4], tf.int32) if rate else None
    dy = tf.constant(np.random.default_rng(1).normal(size=x["content"].shape), tf.float32)
    args = (x["content"], x["position"], x["tt_bias"], x["token_type_mat"], x["attention_mask"], cls, seed)
    ours, g_ours = _grads(tf.function(lambda: attention_probs(*args, shift=shift, rate=rate)), x, dy)
    # Reference: autodiff of the same math inside one XLA graph, where the dropout mask comes from the
    # same generator (ThreeFry under XLA) as in our compiled kernels, so the draws are identical.
    ref, g_ref = tf.function(lambda: _grads(lambda: _probs(*args, shift, rate)[0], x, dy), jit_compile=True)()
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), atol=1e-6)
    for a, b in zip(g_ours, g_ref):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=2e-6)
    if rate:
        dropped = (ours.numpy() == 0).mean()
        assert 0.15 < dropped < 0.45  # the dropout really ran


def test_masked_keys_get_zero_probability():
    x = _inputs(1)
    prob = attention_probs(x["content"], x["position"], x["tt_bias"], x["token_type_mat"], x["attention_mask"],
                           shift=1).numpy()
    assert np.all(prob[:, 0, :, -3:] < 1e-6)
    np.testing.assert_allclose(prob.sum(-1), 1.0, atol=1e-5)


def test_unshift_is_the_adjoint_of_shift():
    """<shift(x), y> == <x, unshift(y)> for every x, y: the transpose of a linear map."""
    rng = np.random.default_rng(0)
    for shift, lq, lk in [(1, 8, 8), (2, 4, 8)]:
        r = shift * lq + lk
        x = tf.constant(rng.normal(size=[2, 3, lq, r]), tf.float64)
        y = tf.constant(rng.normal(size=[2, 3, lq, lk]), tf.float64)
        lhs = tf.reduce_sum(relative_shift(x, lk, shift) * y)
        rhs = tf.reduce_sum(x * relative_unshift(y, r, shift))
        np.testing.assert_allclose(lhs.numpy(), rhs.numpy(), rtol=1e-12)


def test_bf16_inputs_keep_dtype_and_float32_softmax():
    x = {k: (tf.cast(v, tf.bfloat16) if k in ("content", "position", "tt_bias") else v)
         for k, v in _inputs(1).items()}
    dy = tf.ones(x["content"].shape, tf.bfloat16)
    out, grads = _grads(tf.function(lambda: attention_probs(
        x["content"], x["position"], x["tt_bias"], x["token_type_mat"], x["attention_mask"], x["cls_mask"],
        shift=1)), x, dy)
    assert out.dtype == tf.bfloat16 and all(g.dtype == tf.bfloat16 for g in grads)
    np.testing.assert_allclose(tf.reduce_sum(tf.cast(out, tf.float32), -1).numpy(), 1.0, atol=0.03)
