"""The attention score tail on TF's kernels: bias terms, masking, softmax and dropout -> probabilities.

prob = dropout(softmax(content + c * (shift(position) + segment) - INF * (1 - mask)))

Under `jit_compile` (and on TPU) this is plain TF and XLA fuses it with its autodiff gradient; eager
calls run the same plain TF op by op (tracing.unfused). In graphs on TF's own kernels (the fastest
bf16 path on CPU) it is one XLA-compiled kernel forward and a hand-written backward: the softmax
gradient and the segment-bias reductions in one XLA kernel, from the saved float32 probabilities and
dropout mask (not drawn again), and the inverse of the relative shift on TF's pad kernel. XLA's
autodiff of the same region recomputed the softmax into several fusions and lowered the shift's
gradient to a slow pad (fwd+bwd at [12, 8, 128, 128] bf16: 16.5 -> ~6.5 ms).
"""

import functools

import tensorflow as tf

from funnel_tf.modeling.attention_probs import softmax_input
from funnel_tf.modeling.tf_kernels.dropout import apply_mask, keep_mask
from funnel_tf.modeling.tf_kernels.tracing import per_shape_function, unfused


def _static_or_dynamic(x):
    """Shape entries as Python ints where static, scalar tensors where not (e.g. a None batch)."""
    dynamic = tf.shape(x)
    return [d if d is not None else dynamic[i] for i, d in enumerate(x.shape)]


def relative_unshift(grad, num_positions: int, shift: int):
    """Gradient of `relative_shift`: [..., Lq, Lk] -> [..., Lq, R], zeros where nothing was read."""
    lead = _static_or_dynamic(grad)[:-2]
    lq, lk = grad.shape[-2], grad.shape[-1]
    x = tf.pad(tf.reshape(grad, [-1, lq, lk]), [[0, 0], [0, 0], [0, num_positions - shift - lk]])
    x = tf.pad(tf.reshape(x, [-1, num_positions - shift, lq]), [[0, 0], [shift, 0], [0, 0]])
    return tf.reshape(x, lead + [lq, num_positions])


def _probs(content, position, tt_bias, token_type_mat, attention_mask, cls_mask, seed, shift, rate):
    """Plain TF: (probabilities after dropout in content's dtype, float32 softmax, keep mask or None)."""
    p = tf.nn.softmax(softmax_input(content, position, tt_bias, token_type_mat, attention_mask,
                                    cls_mask, shift), axis=-1)
    prob = tf.cast(p, content.dtype)
    keep = None
    if seed is not None:
        keep = keep_mask(prob, seed, rate)
        prob = apply_mask(prob, keep, rate)
    return prob, p, keep


@functools.lru_cache(maxsize=None)
def _kernels(shift: int, has_cls_mask: bool, has_seed: bool, rate: float):
    """XLA-compiled forward and backward for one static setting (shared by every layer)."""

    def unpack(optional):
        optional = list(optional)
        cls_mask = optional.pop(0) if has_cls_mask else None
        seed = optional.pop(0) if has_seed else None
        return cls_mask, seed

    @per_shape_function(jit_compile=True, autograph=False)
    def forward(content, position, tt_bias, token_type_mat, attention_mask, *optional):
        cls_mask, seed = unpack(optional)
        prob, p, keep = _probs(content, position, tt_bias, token_type_mat, attention_mask, cls_mask, seed,
                               shift, rate)
        return prob, p, (keep if keep is not None else tf.zeros([], tf.bool))

    @per_shape_function(jit_compile=True, autograph=False)
    def backward(dy, p, keep, token_type_mat, cls_mask=None):
        """-> d content [N, B, Lq, Lk], d bias (before the shift, float32) and d tt_bias [N, B, Lq, 2].
        `keep`: the forward's dropout mask (a scalar placeholder without dropout)."""
        g = tf.cast(dy, tf.float32)
        if has_seed:
            g = tf.where(keep, g / (1.0 - rate), 0.0)
        d_score = p * (g - tf.reduce_sum(g * p, axis=-1, keepdims=True))
        d_bias = d_score * tf.cast(cls_mask, tf.float32) if cls_mask is not None else d_score
        d_same = tf.reduce_sum(tf.where(token_type_mat[None], d_bias, 0.0), axis=-1, keepdims=True)
        d_diff = tf.reduce_sum(d_bias, axis=-1, keepdims=True) - d_same
        return (tf.cast(d_score, dy.dtype), tf.cast(d_bias, dy.dtype),
                tf.cast(tf.concat([d_diff, d_same], axis=-1), dy.dtype))

    return forward, backward


def attention_probs(content, position, tt_bias, token_type_mat, attention_mask, cls_mask=None, seed=None,
                    shift: int = 0, rate: float = 0.0):
    """Attention probabilities [N, B, Lq, Lk] (see module doc).

    content [N, B, Lq, Lk]; position [N, B, Lq, R] unshifted (shift > 0) or [N, B, Lq, Lk]
    (shift 0); tt_bias [N, B, Lq, 2] (different, same segment); token_type_mat bool [B, Lq, Lk];
    attention_mask [B, Lk] (1 = attend); cls_mask [Lq, Lk] or None; seed: the dropout's [2] int32
    stateless seed, or None for no dropout.
    """
    if unfused():
        return _probs(content, position, tt_bias, token_type_mat, attention_mask, cls_mask, seed, shift,
                      rate)[0]
    forward, backward = _kernels(shift, cls_mask is not None, seed is not None, float(rate))
    optional = [a for a in (cls_mask, seed) if a is not None]
    cls_args = [cls_mask] if cls_mask is not None else []
    num_positions = position.shape[-1]

    @tf.custom_gradient
    def call(content, position, tt_bias):
        prob, p, keep = forward(content, position, tt_bias, token_type_mat, attention_mask, *optional)

        def grad(dy):
            d_content, d_bias, d_tt = backward(dy, p, keep, token_type_mat, *cls_args)
            d_position = relative_unshift(d_bias, num_positions, shift) if shift else d_bias
            return d_content, tf.cast(d_position, position.dtype), tf.cast(d_tt, tt_bias.dtype)
        return prob, grad

    return call(content, position, tt_bias)
