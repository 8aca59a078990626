"""ELECTRA (Clark et al. 2020) replaced-token detection as a Task, as in the Funnel-Transformer
release.

The generator (1/4 width, same blocks, shares the discriminator's embedding table and input
LayerNorm, output tied to that table) predicts the masked tokens; Gumbel-max samples replace
them; the discriminator labels every non-padding token as replaced (1) or original (0; a
correctly sampled token counts as original). loss = generator MLM + disc_weight * disc BCE,
the latter averaged over non-padding tokens. No gradient flows through the sampling.
Input features: those of masked LM (tasks/mlm.py). keras.ops: the TF and the JAX engine run this
code (the sampling's seed is TF's per-step-and-replica int32 pair, or the JAX step's key).
"""

from __future__ import annotations

from typing import Optional

import keras
from keras import ops

from funnel_tf.config import FunnelConfig
from funnel_tf.modeling.heads import FunnelForMaskedLM, FunnelForPreTraining
from funnel_tf.tasks.base import Task
from funnel_tf.tasks.inputs import PretrainingInputs
from funnel_tf.tasks.losses import divide_no_nan, masked_lm_terms, sigmoid_cross_entropy
from funnel_tf.tasks.mlm import PRETRAINING_FEATURES


def generator_config(config: FunnelConfig, width: float = 0.25) -> FunnelConfig:
    """The ELECTRA generator: same block layout and decoder, `width` x d_model / n_head / d_inner,
    same d_head, embeddings of the discriminator's width (projected to its d_model), and the
    original's dense->gelu->LayerNorm transform before the tied output layer."""
    def shrink(x):
        return max(1, int(round(x * width)))
    d_model = shrink(config.d_model)
    d_model += d_model % 2  # sin/cos position features need an even width
    return config.replace(d_model=d_model, n_head=shrink(config.n_head),
                          d_inner=shrink(config.d_inner), d_embed=config.embedding_size,
                          mlm_transform=True)


def uniform_noise(shape, seed):
    """U[0, 1) float32 of `shape` from a stateless seed: on TensorFlow an int32 [2] seed (per step
    and replica, tf.random.stateless_uniform, which keras.random cannot take as a tensor); on JAX
    a PRNG key (the step's, through keras.random)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.random.stateless_uniform(shape, seed=seed, dtype=tf.float32)
    return keras.random.uniform(shape, dtype="float32", seed=seed)


def gumbel_argmax(logits, seed):
    """One sample per row of `logits` [..., V] (temperature 1): argmax(logits + Gumbel noise), the
    original's formula; stateless so that it is reproducible per (step, replica) and XLA-friendly."""
    u = uniform_noise(ops.shape(logits), seed)
    gumbel = -ops.log(-ops.log(u + 1e-9) + 1e-9)
    return ops.cast(ops.argmax(ops.stop_gradient(ops.cast(logits, "float32")) + gumbel, axis=-1),
                    "int32")


def scatter_to_sequence(values, positions, weights, seq_len: int):
    """Place int values [B, P] at positions [B, P] of a [B, L] grid (slots with weight 0 ignored).

    -> (grid int32 [B, L], is_target bool [B, L]). One-hot based (static shapes, no scatter
    collisions from padded slots), like the original's target_mapping.
    """
    slot = ops.one_hot(ops.cast(positions, "int32"), seq_len, dtype="int32")   # [B, P, L]
    slot = slot * ops.cast(ops.cast(weights, "float32") > 0, "int32")[:, :, None]
    is_target = ops.max(slot, axis=1) > 0                                       # [B, L]
    grid = ops.max(slot * ops.cast(values, "int32")[:, :, None], axis=1)        # [B, L]
    return grid, is_target


class ElectraTask(PretrainingInputs, Task):
    """Discriminator (FunnelForPreTraining, the backbone) + generator (FunnelForMaskedLM)."""

    name = "electra"
    metrics = {"loss": ("loss", None), "gen_loss": ("gen_loss", None),
               "disc_loss": ("disc_loss", None),
               "gen_accuracy": ("gen_correct", "gen_count"),
               "disc_accuracy": ("disc_correct", "disc_count"),
               "replaced_ratio": ("replaced", "disc_count"),
               "replaced_recall": ("replaced_detected", "replaced")}
    feature_keys = PRETRAINING_FEATURES
    backbone_model = "discriminator"

    def __init__(self, config: Optional[FunnelConfig] = None, disc_weight: float = 50.0,
                 generator_width: float = 0.25):
        self.config = config
        self.disc_weight = float(disc_weight)
        self.generator_width = float(generator_width)
        if config is not None:
            generator_config(config, self.generator_width)  # a width it cannot take fails here

    @property
    def gen_config(self) -> FunnelConfig:
        return generator_config(self.config, self.generator_width)

    def build_models(self, config):
        discriminator = FunnelForPreTraining(config, name="discriminator")
        with keras.name_scope("generator"):  # distinct variable paths from the discriminator's
            generator = FunnelForMaskedLM(
                generator_config(config, self.generator_width),
                embeddings=discriminator.funnel.embeddings, name="generator_lm")
        return {"discriminator": discriminator, "generator": generator}

    @property
    def discriminator(self) -> FunnelForPreTraining:
        return self.models["discriminator"]

    @property
    def generator(self) -> FunnelForMaskedLM:
        return self.models["generator"]

    def local_normalizers(self, features):
        return {"gen_count": ops.sum(ops.cast(features["masked_weights"], "float32")),
                "disc_count": ops.sum(ops.cast(features["attention_mask"], "float32"))}

    def loss_and_stats(self, features, normalizers, training, seed):
        self.check_features(features)
        inputs = self.model_inputs(features)
        ids = ops.cast(features["input_ids"], "int32")
        positions, weights = features["masked_positions"], features["masked_weights"]
        gen_logits = self.generator(inputs, masked_positions=positions,
                                    training=training)["logits"]            # [B, P, V]
        ce_sum, gen_correct, gen_count = masked_lm_terms(gen_logits, features["masked_ids"], weights)
        gen_loss = divide_no_nan(ce_sum, normalizers["gen_count"])

        sampled = gumbel_argmax(gen_logits, seed)                               # [B, P]
        seq_len = ids.shape[1]
        sampled_grid, is_target = scatter_to_sequence(sampled, positions, weights, seq_len)
        original_grid, _ = scatter_to_sequence(features["masked_ids"], positions, weights, seq_len)
        original = ops.where(is_target, original_grid, ids)                    # [B, L]
        disc_ids = ops.where(is_target, sampled_grid, ids)
        labels = ops.cast(ops.not_equal(disc_ids, original), "float32")        # 1 = replaced

        disc_inputs = dict(inputs, input_ids=disc_ids)
        disc_logits = ops.cast(self.discriminator(disc_inputs, training=training)["logits"],
                               "float32")                                      # [B, L]
        mask = ops.cast(features["attention_mask"], "float32")
        bce = sigmoid_cross_entropy(labels, disc_logits)                        # [B, L]
        disc_loss = divide_no_nan(ops.sum(bce * mask), normalizers["disc_count"])
        predicted = ops.cast(disc_logits > 0, "float32")                       # 1 = "replaced"
        disc_correct = ops.cast(ops.equal(predicted, labels), "float32")

        loss = gen_loss + self.disc_weight * disc_loss
        return loss, {"loss": loss, "gen_loss": gen_loss, "disc_loss": disc_loss,
                      "gen_correct": gen_correct, "gen_count": gen_count,
                      "disc_correct": ops.sum(disc_correct * mask),
                      "disc_count": ops.sum(mask),
                      "replaced": ops.sum(labels * mask),
                      "replaced_detected": ops.sum(labels * predicted * mask)}


__all__ = ["ElectraTask", "generator_config", "gumbel_argmax", "scatter_to_sequence",
           "uniform_noise"]
