"""Dropout with an explicit RNG: Keras semantics (rate, scaling, identity at inference), fresh masks
per call, XLA and bf16, and the RNG choice that keeps XLA:CPU fast."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from funnel_tf.modeling.dropout import Dropout
from funnel_tf.modeling.tf_kernels.dropout import rng_algorithm


def test_identity_when_not_training_or_rate_zero():
    x = tf.random.normal([4, 8])
    np.testing.assert_array_equal(Dropout(0.3)(x, training=False).numpy(), x.numpy())
    np.testing.assert_array_equal(Dropout(0.0)(x, training=True).numpy(), x.numpy())


def test_rate_and_scale():
    x = tf.ones([200, 500])
    y = Dropout(0.1, seed=1)(x, training=True).numpy()
    kept = y != 0
    assert abs(kept.mean() - 0.9) < 0.005  # 100k draws: std of the mean ~0.001
    np.testing.assert_allclose(y[kept], 1 / 0.9, rtol=1e-6)


@pytest.mark.needs_host_xla
def test_fresh_mask_each_call_and_under_xla():
    layer = Dropout(0.5, seed=3)
    x = tf.ones([64, 64])
    f = tf.function(lambda t: layer(t, training=True), jit_compile=True)
    a, b = f(x).numpy(), f(x).numpy()
    assert (a != b).any()
    assert abs((a != 0).mean() - 0.5) < 0.05


def test_bf16_keeps_dtype_and_exact_rate():
    x = tf.ones([200, 500], tf.bfloat16)
    y = Dropout(0.1, seed=2, dtype="mixed_bfloat16")(x, training=True)
    assert y.dtype == tf.bfloat16
    assert abs((y.numpy() != 0).mean() - 0.9) < 0.005


def test_gradient_is_the_mask_times_scale():
    layer = Dropout(0.25, seed=4)
    x = tf.ones([32, 32])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
        total = tf.reduce_sum(y)
    g = tape.gradient(total, x).numpy()
    np.testing.assert_allclose(g, y.numpy())  # d(sum)/dx = keep / (1 - rate) = y for x = 1


@pytest.mark.needs_host_xla
def test_rng_choice_follows_compilation_and_config_round_trip():
    assert rng_algorithm() == "philox"  # eager / TF kernels on CPU
    seen = []

    def probe():
        seen.append(rng_algorithm())
        return tf.constant(0)
    tf.function(probe, jit_compile=True)()
    tf.function(probe)()
    assert seen == ["threefry", "philox"]
    layer = Dropout(0.2, name="d")
    clone = Dropout.from_config(layer.get_config())
    assert clone.rate == 0.2 and isinstance(clone, keras.layers.Dropout)
