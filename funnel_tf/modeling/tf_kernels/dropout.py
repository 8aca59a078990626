"""Dropout masks with an explicitly chosen counter-based RNG (TensorFlow backend).

Keras' Dropout draws its mask with TF's default stateless algorithm (AUTO_SELECT). Under XLA on CPU
that lowers to a random-bit generator far slower than the alternatives (one [8,12,128,128] mask with
its gradient, 2 cores: AUTO_SELECT ~800 ms, Philox ~16 ms, ThreeFry ~2 ms), which made dropout about
a third of the small model's XLA train step. modeling/dropout.Dropout keeps Keras' SeedGenerator
and semantics (zero with probability `rate`, scale the rest by 1/(1-rate)); on TF it draws its
mask here, naming the algorithm; the mask comes from 16-bit integers whatever the dtype, so the
drop rate stays accurate under mixed_bfloat16 (bf16 uniforms have 8 bits).
"""

import math

import tensorflow as tf

from funnel_tf.xla import in_xla_context, plain_ops


def rng_algorithm() -> str:
    """The stateless RNG for the graph being traced.

    TPU: AUTO_SELECT (the hardware generator). Under XLA (jit_compile): ThreeFry, the cheapest
    expansion on CPU. Plain TF kernels: Philox, the only algorithm the CPU kernels implement.
    """
    if tf.config.list_logical_devices("TPU"):
        return "auto_select"
    if in_xla_context():
        return "threefry"
    return "philox"


def next_seed(layer):
    """The next [2] int32 stateless seed of a Keras Dropout `layer` (advances its SeedGenerator),
    distinct per replica."""
    seed = layer.seed_generator.next()
    if seed.dtype != tf.int32:  # int64 state on some devices; stateless ops want int32 under XLA
        seed = tf.cast(tf.math.floormod(seed, tf.int32.max - 1), tf.int32)
    return replica_seed(seed)


def replica_seed(seed):
    """`seed` [2] int32 made distinct per replica of a tf.distribute step.

    The generator state is one mirrored variable, so every replica reads the same seed and, without
    this, applies the same mask to its own batch (the TF1 original drew per core). Replica r > 0
    folds r in (tf.random.fold_in); replica 0, a one-replica run and code outside `strategy.run`
    keep the seed as is, so their masks are those of a run without a strategy, bit for bit. The
    replica id is a Python constant under MirroredStrategy and a tensor under TPUStrategy."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return seed
    replica = context.replica_id_in_sync_group  # int32 scalar
    static = tf.get_static_value(replica)
    if static is not None:
        return seed if int(static) == 0 else tf.random.fold_in(seed, replica, alg="philox")
    return tf.where(tf.equal(replica, 0), seed, tf.random.fold_in(seed, replica, alg="philox"))


MASK_BITS = 16  # random bits per keep/drop decision: two decisions from each 32-bit draw


def dropout_keep_mask(shape, seed, rate: float):
    """bool mask of `shape` (ints or a shape tensor), True with probability 1 - rate, the rate
    rounded to a multiple of 2**-16 (off by at most 7.6e-6). Each 32 random bits give two
    decisions: the random-bit generator is most of dropout's cost, and a float32 uniform per
    element spent all 32 on one."""
    static = isinstance(shape, (list, tuple))
    n = math.prod(shape) if static else tf.reduce_prod(shape)
    bits = tf.random.stateless_uniform([(n + 1) // 2], seed, minval=None, maxval=None, dtype=tf.uint32,
                                       alg=rng_algorithm())
    halves = tf.reshape(tf.bitcast(bits, tf.uint16), [-1])[:n]  # [2 * ceil(n/2)] -> [n]
    threshold = int(round(rate * (1 << MASK_BITS)))
    return tf.reshape(halves >= tf.constant(threshold, tf.uint16), shape)


_MASK_KERNELS = {}


def keep_mask(like, seed, rate: float):
    """`dropout_keep_mask` for the shape of tensor `like`. With a static shape on TF's kernels it is
    drawn by an XLA kernel (ThreeFry), ~3x cheaper on CPU than TF's Philox kernel."""
    if not like.shape.is_fully_defined():
        return dropout_keep_mask(tf.shape(like), seed, rate)
    shape = tuple(int(d) for d in like.shape)
    if plain_ops():
        return dropout_keep_mask(shape, seed, rate)
    key = (shape, rate)
    if key not in _MASK_KERNELS:
        _MASK_KERNELS[key] = tf.function(lambda s: dropout_keep_mask(shape, s, rate), jit_compile=True,
                                         autograph=False)
    return _MASK_KERNELS[key](seed)


def apply_mask(inputs, keep, rate: float):
    """Zero where not `keep`, scale the rest by 1/(1-rate)."""
    scale = tf.cast(1.0 / (1.0 - rate), inputs.dtype)
    return tf.where(keep, inputs * scale, tf.zeros([], inputs.dtype))


def apply_dropout(inputs, seed, rate: float):
    """Zero with probability `rate`, scale the rest by 1/(1-rate)."""
    return apply_mask(inputs, keep_mask(inputs, seed, rate), rate)
