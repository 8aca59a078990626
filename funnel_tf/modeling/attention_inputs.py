"""The per-call attention structure shared by all layers of an encoder (or decoder): positional tables,
token-type "same segment" matrix, CLS mask and key mask, and how each is pooled around a pooling layer.
"""

from typing import Any, NamedTuple, Optional

import numpy as np
from keras import ops

from funnel_tf.modeling.pooling import pool_tensor, stride_pool

CLS_TOKEN_TYPE = 2  # CLS counts as the same segment as every token (reference convention)


class AttentionInputs(NamedTuple):
    position_embeds: Any  # relative_shift: list of (no_pool, pool) per block; factorized: (phi, pi, psi, omega)
    token_type_mat: Any  # bool [B, Lq, Lk]: query and key share a segment (or one is CLS)
    attention_mask: Any  # float [B, Lk], 1 = attend
    cls_mask: Optional[Any]  # float [Lq, Lk]: 0 on the CLS row/column, else 1; None = not applied


def token_type_ids_to_mat(token_type_ids):
    """[B, L] ids -> bool [B, L, L]: same segment, with type 2 (CLS) matching everything."""
    rows, cols = ops.expand_dims(token_type_ids, 2), ops.expand_dims(token_type_ids, 1)  # [B, L, 1], [B, 1, L]
    is_cls_row, is_cls_col = ops.equal(rows, CLS_TOKEN_TYPE), ops.equal(cols, CLS_TOKEN_TYPE)
    return ops.logical_or(ops.equal(rows, cols), ops.logical_or(is_cls_row, is_cls_col))


def cls_mask_matrix(seq_len: int):
    """[L, L] float32, zero on row 0 and column 0 (no positional/segment bias to or from CLS)."""
    mask = np.ones([seq_len, seq_len], np.float32)
    mask[0, :] = mask[:, 0] = 0.0
    return ops.convert_to_tensor(mask)


def init_attention_inputs(position_encoding, seq_len: int, attention_mask, token_type_ids, config,
                          training=False) -> AttentionInputs:
    """Structures for a full-length sequence of `seq_len` tokens."""
    use_cls_mask = config.separate_cls or config.always_mask_cls
    return AttentionInputs(
        position_embeds=position_encoding.tables(seq_len, training=training),
        token_type_mat=token_type_ids_to_mat(token_type_ids),
        attention_mask=ops.cast(attention_mask, "float32"),
        cls_mask=cls_mask_matrix(seq_len) if use_cls_mask else None,
    )


def _stride(x, axis, config):
    if x is None:
        return None
    return stride_pool(x, axis, config.separate_cls, config.truncate_seq)


def _pool_mask(mask, config):
    """Pool the key mask (1 = attend): "min" (HF) or "max" (original release), see FunnelConfig.mask_pooling."""
    return pool_tensor(mask, config.mask_pooling, config.separate_cls, config.truncate_seq)


def pre_attention_pooling(hidden, inputs: AttentionInputs, config):
    """Pool the query side (and everything, without pool_q_only) before a block's first layer.

    Returns (pooled hidden [B, L', D], updated inputs).
    """
    pos = inputs.position_embeds
    pooled = pool_tensor(hidden, config.pooling_type, config.separate_cls, config.truncate_seq)
    if config.pool_q_only:
        if config.attention_type == "factorized":
            pos = tuple(_stride(t, 0, config) for t in pos[:2]) + tuple(pos[2:])
        return pooled, AttentionInputs(
            position_embeds=pos,
            token_type_mat=_stride(inputs.token_type_mat, 1, config),
            attention_mask=inputs.attention_mask,
            cls_mask=_stride(inputs.cls_mask, 0, config),
        )
    if config.attention_type == "factorized":
        pos = tuple(_stride(t, 0, config) for t in pos)
    return pooled, AttentionInputs(
        position_embeds=pos,
        token_type_mat=_stride(_stride(inputs.token_type_mat, 1, config), 2, config),
        attention_mask=_pool_mask(inputs.attention_mask, config),
        cls_mask=_stride(_stride(inputs.cls_mask, 0, config), 1, config),
    )


def post_attention_pooling(inputs: AttentionInputs, config) -> AttentionInputs:
    """After a pool_q_only layer, pool the key side so later layers are plain self-attention.

    The key mask is pooled by `config.mask_pooling` ("min": a pooled slot is attended only if both
    members are, HF; "max": if either is, the original release).
    """
    if not config.pool_q_only:
        return inputs
    pos = inputs.position_embeds
    if config.attention_type == "factorized":
        pos = tuple(pos[:2]) + tuple(_stride(t, 0, config) for t in pos[2:])
    return AttentionInputs(
        position_embeds=pos,
        token_type_mat=_stride(inputs.token_type_mat, 2, config),
        attention_mask=_pool_mask(inputs.attention_mask, config),
        cls_mask=_stride(inputs.cls_mask, 1, config),
    )
