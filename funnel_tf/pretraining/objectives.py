"""Pretraining objectives: masked LM on the full (decoder) model, and ELECTRA replaced-token detection.

An objective owns its Keras models and turns a batch of features into a loss plus metric sums.
Input features (from `funnel_tf.text`): input_ids (masked) / attention_mask / token_type_ids
int32 [B, L]; masked_positions / masked_ids int32 [B, P]; masked_weights float32 [B, P].

Distribution contract (read by `loop.py`): every loss is a *global* weighted mean. The loop first sums
`local_normalizers(features)` across replicas, then each replica returns
`sum_of_its_weighted_losses / global_normalizer`; summing gradients across replicas then gives
exactly the gradient of the global-batch mean, for any replica count. Metric values are local sums
("<name>" numerators and "<name>_count" style denominators) that the loop sums across replicas and
steps before dividing.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Tuple

import keras
import tensorflow as tf

from funnel_tf.config import FunnelConfig
from funnel_tf.modeling.heads import FunnelForMaskedLM, FunnelForPreTraining

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
FEATURE_KEYS = MODEL_INPUTS + ("masked_positions", "masked_ids", "masked_weights")


def model_inputs(features: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    return {k: features[k] for k in MODEL_INPUTS if k in features}


def check_features(features: Mapping[str, tf.Tensor]) -> None:
    """Fail early (at trace time) with the missing key names instead of a KeyError deep inside."""
    missing = [k for k in FEATURE_KEYS if k not in features]
    if missing:
        raise KeyError(f"pretraining features lack {missing}; got {sorted(features)}")


def masked_lm_terms(logits: tf.Tensor, labels: tf.Tensor, weights: tf.Tensor):
    """Per-slot cross-entropy and correctness, both weighted: logits float32 [B, P, V],
    labels int [B, P], weights float [B, P] -> (weighted CE sum, weighted correct sum, weight sum)."""
    logits = tf.cast(logits, tf.float32)
    weights = tf.cast(weights, tf.float32)
    labels = tf.cast(labels, tf.int32)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)  # [B, P]
    correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32)
    return tf.reduce_sum(ce * weights), tf.reduce_sum(correct * weights), tf.reduce_sum(weights)


class Objective:
    """Base class: models, variables, normalisers, loss and the metrics it reports."""

    name = "objective"
    # metric name -> (numerator stat, denominator stat or None for "per step")
    metrics: Dict[str, Tuple[str, Optional[str]]] = {}

    def build(self) -> None:
        """Create the models; call inside `strategy.scope()`."""
        raise NotImplementedError

    @property
    def models(self) -> Dict[str, keras.Model]:
        """Named models to checkpoint."""
        raise NotImplementedError

    @property
    def backbone(self) -> keras.Model:
        """The Funnel backbone that a converted checkpoint warm-starts."""
        raise NotImplementedError

    @property
    def trainable_variables(self) -> List:
        seen, out = set(), []
        for model in self.models.values():
            for v in model.trainable_variables:
                if id(v) not in seen:  # shared layers (ELECTRA embeddings) appear once
                    seen.add(id(v))
                    out.append(v)
        return out

    def local_normalizers(self, features) -> Dict[str, tf.Tensor]:
        raise NotImplementedError

    def loss_and_stats(self, features, normalizers, training: bool,
                       seed: tf.Tensor) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
        """-> (this replica's share of the global loss, {stat: local float32 sum}). `seed` is an
        int32 [2] stateless-RNG seed that differs per step and per replica."""
        raise NotImplementedError


class MaskedLMObjective(Objective):
    """MLM on FunnelModel's full-length decoder output, at the masked positions only.

    Loss = sum(CE * masked_weights) / sum(masked_weights) over the global batch.
    """

    name = "mlm"
    metrics = {"loss": ("loss", None), "mlm_accuracy": ("mlm_correct", "mlm_count")}

    def __init__(self, config: FunnelConfig):
        self.config = config
        self.model: Optional[FunnelForMaskedLM] = None

    def build(self) -> None:
        self.model = FunnelForMaskedLM(self.config, name="masked_lm")

    @property
    def models(self):
        return {"model": self.model}

    @property
    def backbone(self):
        return self.model.funnel

    def local_normalizers(self, features):
        return {"mlm_count": tf.reduce_sum(tf.cast(features["masked_weights"], tf.float32))}

    def loss_and_stats(self, features, normalizers, training, seed):
        check_features(features)
        out = self.model(model_inputs(features), masked_positions=features["masked_positions"],
                         training=training)
        ce_sum, correct, count = masked_lm_terms(out["logits"], features["masked_ids"],
                                                 features["masked_weights"])
        loss = tf.math.divide_no_nan(ce_sum, normalizers["mlm_count"])
        return loss, {"loss": loss, "mlm_correct": correct, "mlm_count": count}


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


class ElectraObjective(Objective):
    """ELECTRA (Clark et al. 2020) as in the Funnel-Transformer release.

    The generator (1/4 width, same blocks, shares the discriminator's embedding table and input
    LayerNorm, output tied to that table) predicts the masked tokens; Gumbel-max samples replace
    them; the discriminator labels every non-padding token as replaced (1) or original (0; a
    correctly sampled token counts as original). loss = generator MLM + disc_weight * disc BCE,
    the latter averaged over non-padding tokens. No gradient flows through the sampling.
    """

    name = "electra"
    metrics = {"loss": ("loss", None), "gen_loss": ("gen_loss", None),
               "disc_loss": ("disc_loss", None),
               "gen_accuracy": ("gen_correct", "gen_count"),
               "disc_accuracy": ("disc_correct", "disc_count"),
               "replaced_ratio": ("replaced", "disc_count"),
               "replaced_recall": ("replaced_detected", "replaced")}

    def __init__(self, config: FunnelConfig, disc_weight: float = 50.0,
                 generator_width: float = 0.25):
        self.config = config
        self.gen_config = generator_config(config, generator_width)
        self.disc_weight = float(disc_weight)
        self.discriminator: Optional[FunnelForPreTraining] = None
        self.generator: Optional[FunnelForMaskedLM] = None

    def build(self) -> None:
        self.discriminator = FunnelForPreTraining(self.config, name="discriminator")
        with keras.name_scope("generator"):  # distinct variable paths from the discriminator's
            self.generator = FunnelForMaskedLM(
                self.gen_config, embeddings=self.discriminator.funnel.embeddings,
                name="generator_lm")

    @property
    def models(self):
        return {"discriminator": self.discriminator, "generator": self.generator}

    @property
    def backbone(self):
        return self.discriminator.funnel

    def local_normalizers(self, features):
        return {"gen_count": tf.reduce_sum(tf.cast(features["masked_weights"], tf.float32)),
                "disc_count": tf.reduce_sum(tf.cast(features["attention_mask"], tf.float32))}

    def loss_and_stats(self, features, normalizers, training, seed):
        check_features(features)
        inputs = model_inputs(features)
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


OBJECTIVES = {"mlm": MaskedLMObjective, "electra": ElectraObjective}


def make_objective(name: str, config: FunnelConfig, **kwargs) -> Objective:
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; choose one of {sorted(OBJECTIVES)}")
    return OBJECTIVES[name](config, **kwargs)
