"""Sequence-length changes: strided pooling of hidden states and masks, stride slicing of attention
structures, and the decoder's repeat-upsampling. All shapes are static; no gathers, only slices and
reshapes, so XLA compiles them to copies. Contiguous slices use ops.slice and pairs are split with
unstack: on TF their gradients (Pad, stack) are cheap, StridedSliceGrad is slow in TF's CPU kernels.
"""

from keras import ops


def _prepare(x, separate_cls: bool, truncate_seq: bool):
    """Prepend CLS so it pools alone; with truncate_seq the last token is dropped. x: [B, T, ...]."""
    if separate_cls:
        suffix = _slice(x, 1, 0, x.shape[1] - 1, 1) if truncate_seq else x
        x = ops.concatenate([_slice(x, 1, 0, 1, 1), suffix], axis=1)
    return x


def pool_tensor(x, mode: str, separate_cls: bool, truncate_seq: bool):
    """Kernel-2 / stride-2 pooling along axis 1 with ceil mode (an odd tail window pools alone).

    x: [B, T] or [B, T, D]; mode: mean | max | min. Output length ceil(T'/2), T' after `_prepare`.
    With separate_cls the first output is CLS itself, then means of pairs (x1,x2), (x3,x4), ...
    """
    if x.shape[1] is None:
        raise ValueError("funnel_tf needs a static sequence length (got None); pad to a fixed length")
    x = _prepare(x, separate_cls, truncate_seq)
    t = x.shape[1]
    if mode not in ("mean", "max", "min"):
        raise ValueError(f"unknown pooling mode {mode!r}; use mean, max or min")
    if t % 2:
        # Duplicate the last element: mean/max/min of (a, a) is a, which is ceil-mode pooling.
        x = ops.concatenate([x, _slice(x, 1, t - 1, t, 1)], axis=1)
    shape = [-1, (t + 1) // 2, 2] + list(x.shape[2:])
    first, second = ops.unstack(ops.reshape(x, shape), num=2, axis=2)
    if mode == "mean":
        # (a + b) / 2, the same float ops as avg-pooling.
        return (first + second) / ops.convert_to_tensor(2, first.dtype)
    if mode == "max":
        return ops.maximum(first, second)
    return ops.minimum(first, second)


def stride_pool(x, axis: int, separate_cls: bool, truncate_seq: bool):
    """Keep CLS plus the first element of each pooling window along `axis` (positions, masks)."""
    axis = axis % len(x.shape)
    if separate_cls:
        head = _slice(x, axis, 0, 1, 1)
        x = ops.concatenate([head, x], axis=axis)
        if truncate_seq:
            return _slice(x, axis, 0, x.shape[axis] - 1, 2)
    return _slice(x, axis, 0, x.shape[axis], 2)


def _slice(x, axis, start, stop, step):
    """x[..., start:stop:step, ...] along `axis` (static bounds); ops.slice when contiguous."""
    if step == 1:
        begin = [0] * len(x.shape)
        size = list(ops.shape(x))  # static ints, or scalar tensors for a TF None batch
        begin[axis], size[axis] = start, stop - start
        return ops.slice(x, begin, size)
    index = [slice(None)] * axis + [slice(start, stop, step)]
    return x[tuple(index)]


def upsample(x, stride: int, target_len: int, separate_cls: bool, truncate_seq: bool):
    """Repeat each pooled vector `stride` times back to `target_len` (CLS kept once, zero tail).

    x: [B, L_last, D] -> [B, target_len, D]. With truncate_seq the positions dropped by pooling get
    zeros (e.g. the last 3 of 512 for three blocks).
    """
    if stride == 1:
        return x
    if separate_cls:
        length = x.shape[1]
        cls, x = _slice(x, 1, 0, 1, 1), _slice(x, 1, 1, length, 1)
    out = ops.repeat(x, stride, axis=1)
    if separate_cls:
        if truncate_seq:
            out = ops.pad(out, [[0, 0], [0, stride - 1], [0, 0]])
        out = _slice(out, 1, 0, target_len - 1, 1)
        return ops.concatenate([cls, out], axis=1)
    return _slice(out, 1, 0, target_len, 1)
