"""Dropout with an explicitly chosen counter-based RNG.

Keras' Dropout draws its mask with TF's default stateless algorithm (AUTO_SELECT). Under XLA on CPU
that lowers to a random-bit generator far slower than the alternatives (one [8,12,128,128] mask with
its gradient, 2 cores: AUTO_SELECT ~800 ms, Philox ~16 ms, ThreeFry ~2 ms), which made dropout about
a third of the small model's XLA train step. This layer keeps Keras' SeedGenerator and semantics
(zero with probability `rate`, scale the rest by 1/(1-rate)) but names the algorithm.
"""

import keras
import tensorflow as tf
from tensorflow.python.framework import ops
from tensorflow.python.ops import control_flow_util


def rng_algorithm() -> str:
    """The stateless RNG for the graph being traced.

    TPU: AUTO_SELECT (the hardware generator). Under XLA (jit_compile): ThreeFry, the cheapest
    expansion on CPU. Plain TF kernels: Philox, the only algorithm the CPU kernels implement.
    """
    if tf.config.list_logical_devices("TPU"):
        return "auto_select"
    if control_flow_util.GraphOrParentsInXlaContext(ops.get_default_graph()):
        return "threefry"
    return "philox"


class Dropout(keras.layers.Dropout):
    """keras.layers.Dropout with a fast mask RNG; the mask is drawn in float32 whatever the dtype,
    so the drop rate stays exact under mixed_bfloat16 (bf16 uniforms have 8 bits)."""

    def call(self, inputs, training=False):
        if not training or self.rate == 0:
            return inputs
        if self.noise_shape is not None:
            return super().call(inputs, training=training)
        return apply_dropout(inputs, self.next_seed(), self.rate)

    def next_seed(self):
        """The next [2] int32 stateless seed (advances the generator state)."""
        seed = self.seed_generator.next()
        if seed.dtype != tf.int32:  # int64 state on some devices; stateless ops want int32 under XLA
            seed = tf.cast(tf.math.floormod(seed, tf.int32.max - 1), tf.int32)
        return seed


def dropout_keep_mask(shape, seed, rate: float):
    """bool mask, True with probability 1 - rate; a float32 uniform so the rate is exact."""
    return tf.random.stateless_uniform(shape, seed, dtype=tf.float32, alg=rng_algorithm()) >= rate


def apply_dropout(inputs, seed, rate: float):
    """Zero with probability `rate`, scale the rest by 1/(1-rate)."""
    keep = dropout_keep_mask(tf.shape(inputs), seed, rate)
    scale = tf.cast(1.0 / (1.0 - rate), inputs.dtype)
    return tf.where(keep, inputs * scale, tf.zeros([], inputs.dtype))
