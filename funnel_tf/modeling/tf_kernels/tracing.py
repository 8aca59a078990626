"""tf.functions that are traced once per input shape on purpose (XLA kernels need static shapes).

TF warns "N out of the last M calls ... triggered tf.function retracing" when such a function sees a
few shapes in a row, which is expected here (a model called eagerly on several sequence lengths) and
only noise to a user. TF's own switch for this is the function's `_omit_frequent_tracing_warning`
(it sets it on functions restored from SavedModels); we set it on ours.
"""

import tensorflow as tf

from funnel_tf.xla import plain_ops


def per_shape_function(fn=None, **kwargs):
    """`tf.function(fn, **kwargs)` without the frequent-retracing warning; usable as a decorator."""
    if fn is None:
        return lambda f: per_shape_function(f, **kwargs)
    function = tf.function(fn, **kwargs)
    function._omit_frequent_tracing_warning = True  # noqa: SLF001 - TF's per-function switch
    return function


def unfused() -> bool:
    """True where tf_kernels' XLA kernels are not worth it and their plain TF math runs instead:
    inside a graph XLA compiles anyway, on a host that cannot XLA-compile (`plain_ops`), and in
    eager calls. An eager call runs op by op whatever we do, and each new input shape would
    compile a kernel per fused region (~0.1 s each): an eager call of a small model on a new
    length spent 60-75% of its time compiling. Graphs (fit, the engine's steps, tf.function)
    keep the fused kernels. Dropout masks are drawn the same way on both paths."""
    return plain_ops() or tf.executing_eagerly()
