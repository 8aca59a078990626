"""Relative attention layer: the head-major layout's invariants (probabilities, masking, pooled
queries), a numpy reference of the score formula, dynamic batch, and the generic relative shift."""

import numpy as np
import pytest
import tensorflow as tf

from funnel_tf.config import FunnelConfig
from funnel_tf.modeling.attention import FunnelRelMultiheadAttention
from funnel_tf.modeling.attention_probs import relative_shift
from funnel_tf.modeling.attention_inputs import init_attention_inputs, pre_attention_pooling
from funnel_tf.modeling.encoder import make_position_encoding

CFG = FunnelConfig(vocab_size=10, block_sizes=[1, 1], d_model=16, n_head=2, d_head=8, d_inner=24,
                   hidden_dropout=0.0, attention_dropout=0.0)


def _setup(cfg=CFG, batch=2, length=9, seed=0):
    rng = np.random.RandomState(seed)
    layer = FunnelRelMultiheadAttention(cfg, block_index=0)
    layer.build()
    for w in layer.weights:
        w.assign(rng.randn(*w.shape).astype(np.float32) * 0.3)
    x = tf.constant(rng.randn(batch, length, cfg.d_model).astype(np.float32))
    mask = np.ones((batch, length), np.int32)
    mask[-1, -3:] = 0
    types = np.zeros((batch, length), np.int32)
    types[:, 0] = 2
    types[0, length // 2:] = 1
    pos = make_position_encoding(cfg, cfg.num_blocks, "pos")
    inputs = init_attention_inputs(pos, length, tf.constant(mask), tf.constant(types), cfg)
    return layer, x, inputs, mask, types


def _reference_scores(layer, x, inputs, types):
    """Direct numpy evaluation of the score formula (relative_shift, block 0, CLS masked)."""
    w = {v.path.split("/")[-2] + "/" + v.path.split("/")[-1] if "_head" in v.path or "post_proj" in v.path
         else v.path.split("/")[-1]: v.numpy() for v in layer.weights}
    x = x.numpy()
    s = layer.scale
    q = np.einsum("bld,dnh->blnh", x, w["q_head/kernel"]) * s
    k = np.einsum("bld,dnh->blnh", x, w["k_head/kernel"]) + w["k_head/bias"]
    content = np.einsum("binh,bjnh->bnij", q + w["r_w_bias"] * s, k)
    table = inputs.position_embeds[0][0].numpy()  # distances L .. -L+1 (step 1)
    length = x.shape[1]
    r_head = np.einsum("td,dnh->tnh", table, w["r_kernel"])
    pos = np.zeros_like(content)
    for i in range(length):
        for j in range(length):
            t = length - (i - j)  # row of distance i - j in the descending table
            pos[:, :, i, j] = np.einsum("bnh,nh->bn", q[:, i] + w["r_r_bias"] * s, r_head[t])
    seg = np.einsum("binh,snh->bnis", q + w["r_s_bias"] * s, w["seg_embed"])
    same = (types[:, :, None] == types[:, None]) | (types[:, :, None] == 2) | (types[:, None] == 2)
    tt = np.where(same[:, None], seg[..., 1:2], seg[..., 0:1])
    cls = np.ones((length, length))
    cls[0, :] = cls[:, 0] = 0
    return content + (pos + tt) * cls


def test_probabilities_match_numpy_reference_and_mask():
    layer, x, inputs, mask, types = _setup()
    _, prob = layer(x, x, x, inputs, return_attention=True)
    assert prob.shape == (2, 2, 9, 9)  # [B, N, Lq, Lk] like HF
    score = _reference_scores(layer, x, inputs, types) - 1e6 * (1 - mask[:, None, None])
    want = np.exp(score - score.max(-1, keepdims=True))
    want /= want.sum(-1, keepdims=True)
    np.testing.assert_allclose(prob.numpy(), want, atol=2e-6)
    assert np.abs(prob.numpy()[1, :, :, -3:]).max() < 1e-12  # padded keys get no weight


@pytest.mark.needs_host_xla
def test_pooled_query_shapes_and_xla():
    cfg = CFG
    layer, x, inputs, _, _ = _setup()
    layer1 = FunnelRelMultiheadAttention(cfg, block_index=1)
    layer1.build()
    pooled, pooled_inputs = pre_attention_pooling(x, inputs, cfg)
    out, prob = layer1(pooled, x, x, pooled_inputs, return_attention=True)
    assert out.shape == (2, pooled.shape[1], 16) and prob.shape == (2, 2, pooled.shape[1], 9)
    np.testing.assert_allclose(prob.numpy().sum(-1), 1.0, atol=1e-5)
    xla = tf.function(lambda a, b: layer1(a, b, b, pooled_inputs), jit_compile=True)(pooled, x)
    np.testing.assert_allclose(xla.numpy(), out.numpy(), atol=1e-5)


def test_dynamic_batch_dimension():
    layer, x, inputs, _, _ = _setup(batch=1)
    eager = layer(x, x, x, inputs).numpy()
    spec = tf.TensorSpec([None, 9, 16], tf.float32)
    f = tf.function(lambda t: layer(t, t, t, inputs), input_signature=[spec])
    np.testing.assert_allclose(f(x).numpy(), eager, atol=1e-6)


def test_relative_shift_any_leading_dims():
    lq, lk = 3, 4
    r = lq + lk
    scores = np.arange(5 * 2 * lq * r, dtype=np.float32).reshape(5, 2, lq, r)
    got = relative_shift(tf.constant(scores), lk, 1).numpy()
    for i in range(lq):
        for j in range(lk):
            np.testing.assert_array_equal(got[..., i, j], scores[..., i, j + (lq - i)])
    flat = relative_shift(tf.constant(scores.reshape(10, lq, r)), lk, 1).numpy()
    np.testing.assert_array_equal(flat.reshape(got.shape), got)
