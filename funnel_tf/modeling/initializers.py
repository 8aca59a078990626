"""Initialisers following HF PyTorch's `_init_weights` for Funnel (only matters for training from scratch)."""

import math

import keras


def dense_initializer(config, fan_in: int, fan_out: int):
    """N(0, std) with std = initializer_std or sqrt(1 / (fan_in + fan_out)) (HF's rule, not Xavier)."""
    std = config.initializer_std if config.initializer_std is not None else math.sqrt(1.0 / (fan_in + fan_out))
    return keras.initializers.RandomNormal(stddev=std)


def embedding_initializer(config):
    return keras.initializers.RandomNormal(
        stddev=config.initializer_std if config.initializer_std is not None else 1.0)


def relative_bias_initializer(config):
    """HF draws r_w_bias, r_r_bias, r_kernel, r_s_bias, seg_embed from U(0, initializer_range)."""
    return keras.initializers.RandomUniform(minval=0.0, maxval=config.initializer_range)
