"""How a fresh model draws its weights, chosen by `config.init_scheme` (only matters where no
checkpoint is loaded: pretraining from scratch and new task heads).

- "hf": HuggingFace PyTorch's `_init_weights` for Funnel, which only ever had converted weights
  loaded over it: Linear N(0, initializer_std or sqrt(1 / (fan_in + fan_out))), word embeddings
  N(0, initializer_std or 1.0), r_w/r_r/r_s biases, r_kernel and seg_embed U(0, initializer_range).
  With N(0, 1) embeddings tied to the MLM output, the first MLM loss of a published size is ~240.
- "original": the original release's pretraining (`init="truncated_normal"`, `init_std=0.02`):
  every kernel, the embedding table, r_* biases, r_kernel and seg_embed truncated normal (cut at
  2 std) with std initializer_std or 0.02. The first MLM loss is then ~ln(vocab_size).
Biases start at 0 and LayerNorm at gamma 1, beta 0 in both.

Every initializer returned here draws a new seed on each call, so one instance shared by several
weights (q/k/v kernels, the r_* biases) still gives each weight its own values; the seeds come from
Python's `random`, which `keras.utils.set_random_seed` seeds, so a seeded build is reproducible.
"""

import math

import keras

ORIGINAL_STD = 0.02  # the original release's `init_std`


@keras.saving.register_keras_serializable(package="funnel_tf")
class FreshSeed(keras.initializers.Initializer):
    """Wraps a Keras random initializer class so that every call uses a newly drawn seed
    (a plain unseeded Keras 3 initializer fixes its seed at construction and repeats its values)."""

    def __init__(self, kind: str, **kwargs):
        self.kind = kind
        self.kwargs = dict(kwargs)

    def __call__(self, shape, dtype=None):
        cls = {"normal": keras.initializers.RandomNormal,
               "truncated_normal": keras.initializers.TruncatedNormal,
               "uniform": keras.initializers.RandomUniform}[self.kind]
        values = cls(**self.kwargs)(shape, dtype=dtype)
        if self.kind == "truncated_normal" and keras.backend.backend() == "torch":
            values = _redraw_tails(values, cls, self.kwargs, shape, dtype)
        return values

    def get_config(self):
        return {"kind": self.kind, **self.kwargs}


def _redraw_tails(values, cls, kwargs, shape, dtype):
    """Keras' torch truncated_normal keeps a value past 2 std when four draws in a row miss (~4e-6
    of the values: a few in a 30k-word embedding table); redraw those until none is left."""
    from keras import ops

    mean, limit = kwargs.get("mean", 0.0), 2 * kwargs.get("stddev", 0.05)
    while True:
        tails = ops.abs(values - mean) > limit
        if not bool(ops.any(tails)):
            return values
        values = ops.where(tails, cls(**kwargs)(shape, dtype=dtype), values)


def _original_std(config) -> float:
    return config.initializer_std if config.initializer_std is not None else ORIGINAL_STD


def _original(config) -> FreshSeed:
    return FreshSeed("truncated_normal", mean=0.0, stddev=_original_std(config))


def dense_initializer(config, fan_in: int, fan_out: int):
    """Kernel of a [fan_in -> fan_out] projection. hf: N(0, initializer_std or
    sqrt(1 / (fan_in + fan_out))) (HF's rule, not Xavier); original: truncated normal."""
    if config.init_scheme == "original":
        return _original(config)
    std = config.initializer_std if config.initializer_std is not None else math.sqrt(1.0 / (fan_in + fan_out))
    return FreshSeed("normal", mean=0.0, stddev=std)


def embedding_initializer(config):
    """The [vocab, d_embed] word embedding table (tied to the MLM output layer)."""
    if config.init_scheme == "original":
        return _original(config)
    return FreshSeed("normal", mean=0.0,
                     stddev=config.initializer_std if config.initializer_std is not None else 1.0)


def relative_bias_initializer(config):
    """r_w_bias, r_r_bias, r_kernel, r_s_bias, seg_embed. hf: U(0, initializer_range)."""
    if config.init_scheme == "original":
        return _original(config)
    return FreshSeed("uniform", minval=0.0, maxval=config.initializer_range)
