"""Where matmul kernels are read in the compute dtype: a cast of the float32 variable, or the
low-precision copy a train step keeps in sync with it.

Under `mixed_bfloat16` on TF's kernels, casting every kernel to bfloat16 each step and its bfloat16
gradient back to float32 were two full passes over the weights (~40 ms of a 0.6 s small-base step
on 2 CPU cores). A train step can instead keep bfloat16 copies, written by its (XLA-fused) optimizer
update, and differentiate with respect to them (engine/weight_copies.py). The layers only ever
call `compute_weight`; without an active set of copies it is the plain cast.
"""

import contextlib
import threading

import tensorflow as tf

_STATE = threading.local()


def compute_weight(variable, dtype):
    """`variable` as a `dtype` tensor: the active copy when one is registered, else a cast."""
    copies = getattr(_STATE, "copies", None)
    if copies is not None:
        copy = copies.get(id(variable))
        if copy is not None and copy.dtype == tf.as_dtype(dtype):
            _STATE.read.add(id(variable))
            return copy.read_value()
    return tf.cast(variable, dtype)


@contextlib.contextmanager
def using_copies(copies: dict):
    """Within the block (while tracing a forward pass), `compute_weight(v)` reads `copies[id(v)]`.

    Yields the set of ids actually read, so the caller can check that every copy was used."""
    previous = getattr(_STATE, "copies", None), getattr(_STATE, "read", None)
    _STATE.copies, _STATE.read = dict(copies), set()
    try:
        yield _STATE.read
    finally:
        _STATE.copies, _STATE.read = previous
