"""Relative multi-head attention of Funnel-Transformer (Transformer-XL style, with segment bias).

score = s(q + u)k  +  c * s(q + v) W_R p(i - j)  +  c * s(q + w) S[same_ij]  - 1e6 (1 - mask_j)
where c zeroes the CLS row/column. Kernels keep the heads split ([d_model, n_head, d_head]), the
layout of the original checkpoints, so import is a copy and einsums need no reshapes.
"""

import keras
import tensorflow as tf

from funnel_tf.config import FunnelConfig
from funnel_tf.modeling.attention_inputs import AttentionInputs
from funnel_tf.modeling.dropout import Dropout
from funnel_tf.modeling.initializers import dense_initializer, relative_bias_initializer

INF = 1e6


def relative_shift(scores, context_len: int, shift: int):
    """Transformer-XL shift: out[..., i, j] = scores[..., i, j + shift * (Lq - i)].

    scores: [B, N, Lq, R] with R = shift * Lq + Lk -> [B, N, Lq, Lk]; reshapes and slices only.
    tf.slice rather than strided indexing: its gradient is a Pad, where StridedSliceGrad costs ~35x
    more in TF's CPU kernels (fwd+bwd on [8, 12, 128, 256]: 69 ms -> 2 ms) and ~2x under XLA.
    """
    _, n, lq, r = scores.shape
    x = tf.slice(tf.reshape(scores, [-1, n, r, lq]), [0, 0, shift, 0], [-1, -1, -1, -1])
    x = tf.reshape(x, [-1, n, lq, r - shift])
    return tf.slice(x, [0, 0, 0, 0], [-1, -1, -1, context_len])


class FunnelRelMultiheadAttention(keras.layers.Layer):
    """Post-LN relative attention; the residual is the (possibly pooled) query."""

    def __init__(self, config: FunnelConfig, block_index: int, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.block_index = block_index
        d, n, h = config.d_model, config.n_head, config.d_head
        self.scale = 1.0 / (h ** 0.5)
        init = dense_initializer(config, d, n * h)
        self.q_head = keras.layers.EinsumDense("bld,dnh->blnh", output_shape=(None, n, h),
                                               kernel_initializer=init, name="q_head")
        self.k_head = keras.layers.EinsumDense("bld,dnh->blnh", output_shape=(None, n, h), bias_axes="nh",
                                               kernel_initializer=init, name="k_head")
        self.v_head = keras.layers.EinsumDense("bld,dnh->blnh", output_shape=(None, n, h), bias_axes="nh",
                                               kernel_initializer=init, name="v_head")
        self.post_proj = keras.layers.EinsumDense("blnh,nhd->bld", output_shape=(None, d), bias_axes="d",
                                                  kernel_initializer=dense_initializer(config, n * h, d),
                                                  name="post_proj")
        self.layer_norm = keras.layers.LayerNormalization(epsilon=config.layer_norm_eps, name="layer_norm")
        self.attention_dropout = Dropout(config.attention_dropout)
        self.hidden_dropout = Dropout(config.hidden_dropout)

    def build(self, input_shape=None):
        """Create every weight from the config alone (shapes never depend on the input)."""
        cfg = self.config
        d, n, h = cfg.d_model, cfg.n_head, cfg.d_head
        rinit = relative_bias_initializer(cfg)
        self.r_w_bias = self.add_weight(name="r_w_bias", shape=(n, h), initializer=rinit)
        self.r_r_bias = self.add_weight(name="r_r_bias", shape=(n, h), initializer=rinit)
        self.r_kernel = self.add_weight(name="r_kernel", shape=(d, n, h), initializer=rinit)
        self.r_s_bias = self.add_weight(name="r_s_bias", shape=(n, h), initializer=rinit)
        self.seg_embed = self.add_weight(name="seg_embed", shape=(2, n, h), initializer=rinit)
        for dense in (self.q_head, self.k_head, self.v_head):
            dense.build((None, None, d))
        self.post_proj.build((None, None, n, h))
        self.layer_norm.build((None, None, d))

    def _positional_scores(self, position_embeds, q, context_len, cls_mask):
        """Relative-position term [B, N, Lq, Lk]. q is already scaled: [B, Lq, N, H]."""
        cfg = self.config
        dtype = q.dtype
        v = tf.cast(self.r_r_bias, dtype) * self.scale
        w_r = tf.cast(self.r_kernel, dtype)
        if cfg.attention_type == "factorized":
            phi, pi, psi, omega = (tf.cast(t, dtype) for t in position_embeds)
            q_r = tf.einsum("binh,dnh->bind", q + v, w_r)  # [B, Lq, N, D]
            scores = (tf.einsum("bind,jd->bnij", q_r * phi[:, None], psi)
                      + tf.einsum("bind,jd->bnij", q_r * pi[:, None], omega))
        else:
            shift = 2 if q.shape[1] != context_len else 1
            r = tf.cast(position_embeds[self.block_index][shift - 1], dtype)  # [R, D]
            r_head = tf.einsum("td,dnh->tnh", r, w_r)  # [R, N, H]
            scores = tf.einsum("binh,tnh->bnit", q + v, r_head)  # [B, N, Lq, R]
            scores = relative_shift(scores, context_len, shift)
        if cls_mask is not None:
            scores = scores * tf.cast(cls_mask, dtype)
        return scores

    def _token_type_scores(self, token_type_mat, q, cls_mask):
        """Segment term [B, N, Lq, Lk]: bias for same vs different segment."""
        dtype = q.dtype
        s_bias = tf.cast(self.r_s_bias, dtype) * self.scale
        tt_bias = tf.einsum("bind,snd->bnis", q + s_bias, tf.cast(self.seg_embed, dtype))  # [B, N, Lq, 2]
        diff, same = tt_bias[..., 0:1], tt_bias[..., 1:2]
        scores = tf.where(token_type_mat[:, None], same, diff)
        if cls_mask is not None:
            scores = scores * tf.cast(cls_mask, dtype)
        return scores

    def call(self, query, key, value, attention_inputs: AttentionInputs, training=False,
             return_attention=False):
        position_embeds, token_type_mat, attention_mask, cls_mask = attention_inputs
        context_len = key.shape[1]
        q = self.q_head(query) * self.scale  # [B, Lq, N, H]
        k = self.k_head(key)  # [B, Lk, N, H]
        v = self.v_head(value)  # [B, Lk, N, H]
        dtype = q.dtype
        content = tf.einsum("bind,bjnd->bnij", q + tf.cast(self.r_w_bias, dtype) * self.scale, k)
        score = (content + self._positional_scores(position_embeds, q, context_len, cls_mask)
                 + self._token_type_scores(token_type_mat, q, cls_mask))
        # Mask and softmax in float32 whatever the compute dtype (bf16 safe).
        score = tf.cast(score, tf.float32) - INF * (1.0 - tf.cast(attention_mask, tf.float32)[:, None, None])
        prob = tf.nn.softmax(score, axis=-1)
        prob = self.attention_dropout(tf.cast(prob, dtype), training=training)
        attn_vec = tf.einsum("bnij,bjnd->bind", prob, v)  # [B, Lq, N, H]
        out = self.hidden_dropout(self.post_proj(attn_vec), training=training)
        out = self.layer_norm(query + out)
        return (out, prob) if return_attention else out

    def get_config(self):
        config = super().get_config()
        config.update(config=self.config.to_dict(), block_index=self.block_index)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        cfg = FunnelConfig.from_dict(config.pop("config"))
        return cls(cfg, **config)
