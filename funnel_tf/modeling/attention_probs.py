"""The attention score tail in keras.ops: relative shift, bias terms, masking and the float32 softmax.

prob = dropout(softmax(content + c * (shift(position) + segment) - INF * (1 - mask)))

Plain math on every backend; on TensorFlow, modeling/kernels.py takes the fused kernel with a
hand-written gradient instead (tf_kernels/attention_probs.py), which reuses `relative_shift`.
"""

from keras import ops

INF = 1e6


def relative_shift(scores, context_len: int, shift: int):
    """Transformer-XL shift: out[..., i, j] = scores[..., i, j + shift * (Lq - i)].

    scores: [..., Lq, R] with R = shift * Lq + Lk -> [..., Lq, Lk]; reshapes and slices only.
    ops.slice rather than strided indexing: on TF its gradient is a Pad, where StridedSliceGrad
    costs ~35x more in TF's CPU kernels (fwd+bwd on [8, 12, 128, 256]: 69 ms -> 2 ms).
    """
    lead = list(ops.shape(scores)[:-2])  # static ints, or scalar tensors for a TF None batch
    lq, r = scores.shape[-2], scores.shape[-1]
    x = ops.reshape(scores, [-1, r, lq])
    rows = ops.shape(x)[0]
    x = ops.slice(x, [0, shift, 0], [rows, r - shift, lq])
    x = ops.reshape(x, [-1, lq, r - shift])
    x = ops.slice(x, [0, 0, 0], [rows, lq, context_len])
    return ops.reshape(x, lead + [lq, context_len])


def softmax_input(content, position, tt_bias, token_type_mat, attention_mask, cls_mask, shift: int):
    """float32 scores [N, B, Lq, Lk] before the softmax (arguments as in `attention_probs`)."""
    f32 = "float32"
    if shift:
        position = relative_shift(position, content.shape[-1], shift)
    diff, same = ops.split(ops.cast(tt_bias, f32), 2, axis=-1)  # [N, B, Lq, 1] each
    bias = ops.cast(position, f32) + ops.where(ops.expand_dims(token_type_mat, 0), same, diff)
    if cls_mask is not None:
        bias = bias * ops.cast(cls_mask, f32)
    # Mask and softmax in float32 whatever the compute dtype (bf16 safe).
    mask = ops.expand_dims(ops.cast(attention_mask, f32), 1)  # [B, 1, Lk]
    return ops.cast(content, f32) + bias - INF * (1.0 - mask)


def attention_probs(content, position, tt_bias, token_type_mat, attention_mask, cls_mask, dropout, training,
                    shift: int = 0):
    """Attention probabilities [N, B, Lq, Lk] in content's dtype (see module doc).

    content [N, B, Lq, Lk]; position [N, B, Lq, R] unshifted (shift > 0) or [N, B, Lq, Lk]
    (shift 0); tt_bias [N, B, Lq, 2] (different, same segment); token_type_mat bool [B, Lq, Lk];
    attention_mask [B, Lk] (1 = attend); cls_mask [Lq, Lk] or None; dropout: the Dropout layer.
    """
    p = ops.softmax(softmax_input(content, position, tt_bias, token_type_mat, attention_mask, cls_mask,
                                  shift), axis=-1)
    return dropout(ops.cast(p, content.dtype), training=training)
