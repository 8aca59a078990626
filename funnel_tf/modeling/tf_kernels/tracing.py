"""tf.functions that are traced once per input shape on purpose (XLA kernels need static shapes).

TF warns "N out of the last M calls ... triggered tf.function retracing" when such a function sees a
few shapes in a row, which is expected here (a model called eagerly on several sequence lengths) and
only noise to a user. TF's own switch for this is the function's `_omit_frequent_tracing_warning`
(it sets it on functions restored from SavedModels); we set it on ours.
"""

import tensorflow as tf


def per_shape_function(fn=None, **kwargs):
    """`tf.function(fn, **kwargs)` without the frequent-retracing warning; usable as a decorator."""
    if fn is None:
        return lambda f: per_shape_function(f, **kwargs)
    function = tf.function(fn, **kwargs)
    function._omit_frequent_tracing_warning = True  # noqa: SLF001 - TF's per-function switch
    return function
