"""Relative multi-head attention of Funnel-Transformer (Transformer-XL style, with segment bias).

score = s(q + u)k  +  c * [s(q + v) W_R p(i - j)  +  s(q + w) S[same_ij]]  - 1e6 (1 - mask_j)
where c zeroes the CLS row/column. Kernels keep the heads split ([d_model, n_head, d_head]), the
layout of the original checkpoints, so import is a copy.

Layout: inside the layer q, k, v are head-major [N, B, L, H] and scores [N, B, Lq, Lk]. Every
attention product is then a plain (batched) matmul: QK^T and AV batch over (N, B), and the position
and segment terms fold the batch into rows ([N, B*Lq, H] x [N, H, R]), so neither direction of the
backward pass transposes a score-sized tensor. Measured on the attention layer (fwd+bwd, 8x128,
small): ~14% less CPU than the batch-major einsums under XLA, ~10% in TF kernels (fp32 and bf16).
"""

import keras
from keras import ops

from funnel_tf.config import FunnelConfig
from funnel_tf.modeling import kernels
from funnel_tf.modeling.attention_inputs import AttentionInputs
from funnel_tf.modeling.dropout import Dropout
from funnel_tf.modeling.initializers import dense_initializer, relative_bias_initializer
from funnel_tf.modeling.serialization import FunnelConfigSerializable


class FunnelRelMultiheadAttention(FunnelConfigSerializable, keras.layers.Layer):
    """Post-LN relative attention; the residual is the (possibly pooled) query."""

    config_args = ("block_index",)

    def __init__(self, config: FunnelConfig, block_index: int, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.block_index = block_index
        d, n, h = config.d_model, config.n_head, config.d_head
        self.scale = 1.0 / (h ** 0.5)
        init = dense_initializer(config, d, n * h)
        policy = self.dtype_policy  # every sublayer computes in this layer's policy
        self.q_head = keras.layers.EinsumDense("bld,dnh->blnh", output_shape=(None, n, h),
                                               kernel_initializer=init, name="q_head", dtype=policy)
        self.k_head = keras.layers.EinsumDense("bld,dnh->blnh", output_shape=(None, n, h), bias_axes="nh",
                                               kernel_initializer=init, name="k_head", dtype=policy)
        self.v_head = keras.layers.EinsumDense("bld,dnh->blnh", output_shape=(None, n, h), bias_axes="nh",
                                               kernel_initializer=init, name="v_head", dtype=policy)
        self.post_proj = keras.layers.EinsumDense("blnh,nhd->bld", output_shape=(None, d), bias_axes="d",
                                                  kernel_initializer=dense_initializer(config, n * h, d),
                                                  name="post_proj", dtype=policy)
        self.layer_norm = keras.layers.LayerNormalization(epsilon=config.layer_norm_eps, name="layer_norm",
                                                          dtype=policy)
        self.attention_dropout = Dropout(config.attention_dropout, dtype=policy)
        self.hidden_dropout = Dropout(config.hidden_dropout, dtype=policy)

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

    def _project_heads(self, x, dense, dtype):
        """[B, L, D] -> head-major [N, B, L, H] with the EinsumDense layer's own kernel (and bias).

        A 2-D MatMul on [B*L, D] then one transpose: TF's CPU kernels run MatMul through oneDNN's
        fast path, whereas Einsum pays its own transposes around a batched matmul.
        """
        n, h = self.config.n_head, self.config.d_head
        _, length, d = x.shape
        kernel = ops.reshape(kernels.compute_weight(dense.kernel, dtype), [d, n * h])
        out = ops.matmul(ops.reshape(x, [-1, d]), kernel)  # [B*L, N*H]
        if dense.bias is not None:
            out = out + ops.reshape(ops.cast(dense.bias, dtype), [n * h])
        return ops.transpose(ops.reshape(out, [-1, length, n, h]), [2, 0, 1, 3])

    def _merge_heads(self, attn_vec, dtype):
        """[N, B, Lq, H] -> post_proj kernel -> [B*Lq, D] (transpose, then a 2-D MatMul; the bias is
        added in the fused residual + LayerNorm tail)."""
        n, _, lq, h = attn_vec.shape
        d = self.config.d_model
        x = ops.reshape(ops.transpose(attn_vec, [1, 2, 0, 3]), [-1, n * h])
        kernel = ops.reshape(kernels.compute_weight(self.post_proj.kernel, dtype), [n * h, d])
        return ops.matmul(x, kernel)  # [B*Lq, D]

    def _rows(self, t):
        """[N, B, L, X] -> [N, B*L, X]: the batch folded into rows for a per-head matmul."""
        n, _, _, x = t.shape
        return ops.reshape(t, [n, -1, x])

    def _positional_scores(self, position_embeds, q, context_len):
        """Relative-position term and its shift: ([N, B, Lq, Lk], 0) factorized, or the unshifted
        ([N, B, Lq, R], shift) for relative_shift. CLS mask not applied. q: scaled, [N, B, Lq, H]."""
        cfg = self.config
        dtype = q.dtype
        lead = list(ops.shape(q)[:3])  # N, B, Lq
        q_v = self._rows(q + self._head_bias(self.r_r_bias, dtype))  # [N, B*Lq, H]
        w_r = kernels.compute_weight(self.r_kernel, dtype)
        if cfg.attention_type == "factorized":
            phi, pi, psi, omega = (ops.cast(t, dtype) for t in position_embeds)
            q_r = ops.reshape(ops.einsum("nrh,dnh->nrd", q_v, w_r), lead + [cfg.d_model])  # [N, B, Lq, D]
            return (ops.einsum("nbid,jd->nbij", q_r * phi, psi)
                    + ops.einsum("nbid,jd->nbij", q_r * pi, omega)), 0
        shift = 2 if q.shape[2] != context_len else 1
        r = ops.cast(position_embeds[self.block_index][shift - 1], dtype)  # [R, D]
        # r W_R as a 2-D MatMul plus a small transpose: TF's Einsum kernel ran this product and
        # its weight gradient ~1.6x slower (bf16 [256, 768] x [768, 768]: 1.58 -> 1.02 ms fwd+bwd).
        n, h = cfg.n_head, cfg.d_head
        r_head = ops.matmul(r, ops.reshape(w_r, [cfg.d_model, n * h]))  # [R, N*H]
        r_head = ops.transpose(ops.reshape(r_head, [-1, n, h]), [1, 0, 2])  # [N, R, H]
        scores = kernels.matmul_nt(q_v, r_head)  # [N, B*Lq, R]
        return ops.reshape(scores, lead + [r.shape[0]]), shift  # shifted inside attention_probs

    def _token_type_scores(self, q):
        """Segment bias per query [N, B, Lq, 2] (different, same segment); expanded to [N, B, Lq, Lk]
        inside attention_probs."""
        dtype = q.dtype
        lead = list(ops.shape(q)[:3])
        q_s = self._rows(q + self._head_bias(self.r_s_bias, dtype))
        seg = ops.transpose(ops.cast(self.seg_embed, dtype), [1, 0, 2])  # [N, 2, H]
        return ops.reshape(kernels.matmul_nt(q_s, seg), lead + [2])  # [N, B, Lq, 2]

    def _head_bias(self, bias, dtype):
        """A per-head [N, H] bias, scaled like q, as [N, 1, 1, H] in `dtype`."""
        return ops.reshape(ops.cast(bias, dtype) * self.scale, [bias.shape[0], 1, 1, bias.shape[1]])

    def call(self, query, key, value, attention_inputs: AttentionInputs, training=False,
             return_attention=False):
        """query [B, Lq, D], key/value [B, Lk, D] -> [B, Lq, D] (and probs [B, N, Lq, Lk])."""

        position_embeds, token_type_mat, attention_mask, cls_mask = attention_inputs
        context_len = key.shape[1]
        dtype = self.compute_dtype
        q = self._project_heads(query, self.q_head, dtype) * self.scale  # [N, B, Lq, H]
        k = self._project_heads(key, self.k_head, dtype)  # [N, B, Lk, H]
        v = self._project_heads(value, self.v_head, dtype)  # [N, B, Lk, H]
        content = kernels.matmul_nt(q + self._head_bias(self.r_w_bias, dtype), k)  # [N, B, Lq, Lk]
        position, shift = self._positional_scores(position_embeds, q, context_len)
        prob = kernels.attention_probs(content, position, self._token_type_scores(q), token_type_mat,
                                       attention_mask, cls_mask, self.attention_dropout, training,
                                       shift=shift)  # [N, B, Lq, Lk]
        attn_vec = ops.matmul(prob, v)  # [N, B, Lq, H]
        lq, d = query.shape[1], query.shape[-1]
        out = kernels.dropout_add_norm(self._merge_heads(attn_vec, dtype), ops.reshape(query, [-1, d]),
                                       self.layer_norm, self.hidden_dropout, training, bias=self.post_proj.bias)
        out = ops.reshape(out, [-1, lq, d])  # [B, Lq, D]
        if return_attention:
            return out, ops.transpose(prob, [1, 0, 2, 3])  # [B, N, Lq, Lk] like HF
        return out
