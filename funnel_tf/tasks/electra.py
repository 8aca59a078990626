"""ELECTRA (Clark et al. 2020) replaced-token detection as a Task, as in the Funnel-Transformer
release.

The generator (1/4 width, same blocks, shares the discriminator's embedding table and input
LayerNorm, output tied to that table) predicts the masked tokens; Gumbel-max samples replace
them; the discriminator labels every non-padding token as replaced (1) or original (0; a
correctly sampled token counts as original). loss = generator MLM + disc_weight * disc BCE,
the latter averaged over non-padding tokens. No gradient flows through the sampling.
Input features: those of masked LM (tasks/mlm.py).
"""

from __future__ import annotations

from typing import Optional

import keras
import tensorflow as tf

from funnel_tf.config import FunnelConfig
from funnel_tf.modeling.heads import FunnelForMaskedLM, FunnelForPreTraining
from funnel_tf.tasks.base import Task
from funnel_tf.tasks.losses import masked_lm_terms
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


def gumbel_argmax(logits: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """One sample per row of `logits` [..., V] (temperature 1): argmax(logits + Gumbel noise), the
    original's formula; stateless so that it is reproducible per (step, replica) and XLA-friendly."""
    u = tf.random.stateless_uniform(tf.shape(logits), seed=seed, dtype=tf.float32)
    gumbel = -tf.math.log(-tf.math.log(u + 1e-9) + 1e-9)
    return tf.argmax(tf.stop_gradient(tf.cast(logits, tf.float32)) + gumbel, axis=-1,
                     output_type=tf.int32)


def scatter_to_sequence(values: tf.Tensor, positions: tf.Tensor, weights: tf.Tensor, seq_len: int):
    """Place int values [B, P] at positions [B, P] of a [B, L] grid (slots with weight 0 ignored).

    -> (grid int32 [B, L], is_target bool [B, L]). One-hot based (static shapes, no scatter
    collisions from padded slots), like the original's target_mapping.
    """
    slot = tf.one_hot(tf.cast(positions, tf.int32), seq_len, dtype=tf.int32)  # [B, P, L]
    slot *= tf.cast(tf.cast(weights, tf.float32) > 0, tf.int32)[:, :, None]
    is_target = tf.reduce_max(slot, axis=1) > 0                                 # [B, L]
    grid = tf.reduce_max(slot * tf.cast(values, tf.int32)[:, :, None], axis=1)  # [B, L]
    return grid, is_target


class ElectraTask(Task):
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
        return {"gen_count": tf.reduce_sum(tf.cast(features["masked_weights"], tf.float32)),
                "disc_count": tf.reduce_sum(tf.cast(features["attention_mask"], tf.float32))}

    def loss_and_stats(self, features, normalizers, training, seed):
        self.check_features(features)
        inputs = self.model_inputs(features)
        ids = tf.cast(features["input_ids"], tf.int32)
        positions, weights = features["masked_positions"], features["masked_weights"]
        gen_logits = self.generator(inputs, masked_positions=positions,
                                    training=training)["logits"]            # [B, P, V]
        ce_sum, gen_correct, gen_count = masked_lm_terms(gen_logits, features["masked_ids"], weights)
        gen_loss = tf.math.divide_no_nan(ce_sum, normalizers["gen_count"])

        sampled = gumbel_argmax(gen_logits, seed)                               # [B, P]
        seq_len = ids.shape[1]
        sampled_grid, is_target = scatter_to_sequence(sampled, positions, weights, seq_len)
        original_grid, _ = scatter_to_sequence(features["masked_ids"], positions, weights, seq_len)
        original = tf.where(is_target, original_grid, ids)                     # [B, L]
        disc_ids = tf.where(is_target, sampled_grid, ids)
        labels = tf.cast(tf.not_equal(disc_ids, original), tf.float32)         # 1 = replaced

        disc_inputs = dict(inputs, input_ids=disc_ids)
        disc_logits = tf.cast(self.discriminator(disc_inputs, training=training)["logits"],
                              tf.float32)                                      # [B, L]
        mask = tf.cast(features["attention_mask"], tf.float32)
        bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=disc_logits)
        disc_loss = tf.math.divide_no_nan(tf.reduce_sum(bce * mask), normalizers["disc_count"])
        disc_correct = tf.cast(tf.equal(tf.cast(disc_logits > 0, tf.float32), labels), tf.float32)

        loss = gen_loss + self.disc_weight * disc_loss
        return loss, {"loss": loss, "gen_loss": gen_loss, "disc_loss": disc_loss,
                      "gen_correct": gen_correct, "gen_count": gen_count,
                      "disc_correct": tf.reduce_sum(disc_correct * mask),
                      "disc_count": tf.reduce_sum(mask),
                      "replaced": tf.reduce_sum(labels * mask),
                      "replaced_detected": tf.reduce_sum(
                          labels * tf.cast(disc_logits > 0, tf.float32) * mask)}


__all__ = ["ElectraTask", "generator_config", "gumbel_argmax", "scatter_to_sequence"]
