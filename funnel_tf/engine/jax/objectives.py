"""The pretraining losses of tasks/mlm.py and tasks/electra.py in jax.numpy, for the JAX engine:
the same formulas (TF's softmax cross-entropy, sigmoid cross-entropy, Gumbel-max sampling), the
models called through the task as Keras layers (inside the step's StatelessScope).

Each objective takes the *global* batch (the step is one jit-compiled function over every device:
its sums are global), so the normalizers are plain sums of the batch."""

from __future__ import annotations

from typing import Callable, Dict, Tuple

import jax
import jax.numpy as jnp

from funnel_tf.tasks.base import Task


def divide_no_nan(num, den):
    """num / den, 0 where den == 0 (tf.math.divide_no_nan)."""
    safe = jnp.where(den == 0, 1.0, den)
    return jnp.where(den == 0, 0.0, num / safe)


def masked_lm_terms(logits, labels, weights):
    """logits [B, P, V], labels int [B, P], weights [B, P] -> (weighted CE sum, weighted correct
    sum, weight sum), float32 (tasks/losses.masked_lm_terms)."""
    logits = logits.astype(jnp.float32)
    weights = weights.astype(jnp.float32)
    labels = labels.astype(jnp.int32)
    picked = jnp.take_along_axis(logits, labels[..., None], axis=-1)[..., 0]   # [B, P]
    ce = jax.nn.logsumexp(logits, axis=-1) - picked
    correct = (jnp.argmax(logits, -1).astype(jnp.int32) == labels).astype(jnp.float32)
    return jnp.sum(ce * weights), jnp.sum(correct * weights), jnp.sum(weights)


def mlm_loss(task: Task, features, training: bool, key) -> Tuple[jax.Array, Dict]:
    """MaskedLMTask.loss_and_stats over the global batch."""
    del key
    out = task.model(task.model_inputs(features), masked_positions=features["masked_positions"],
                     training=training)
    ce_sum, correct, count = masked_lm_terms(out["logits"], features["masked_ids"],
                                             features["masked_weights"])
    loss = divide_no_nan(ce_sum, count)
    return loss, {"loss": loss, "mlm_correct": correct, "mlm_count": count}


def gumbel_argmax(logits, key):
    """argmax(logits + Gumbel noise) per row of [..., V] (tasks/electra.gumbel_argmax's formula)."""
    u = jax.random.uniform(key, logits.shape, jnp.float32)
    gumbel = -jnp.log(-jnp.log(u + 1e-9) + 1e-9)
    return jnp.argmax(jax.lax.stop_gradient(logits.astype(jnp.float32)) + gumbel,
                      axis=-1).astype(jnp.int32)


def scatter_to_sequence(values, positions, weights, seq_len: int):
    """int values [B, P] at positions [B, P] of a [B, L] grid, slots of weight 0 ignored ->
    (grid int32 [B, L], is_target bool [B, L]) (tasks/electra.scatter_to_sequence)."""
    slot = jax.nn.one_hot(positions.astype(jnp.int32), seq_len, dtype=jnp.int32)  # [B, P, L]
    slot = slot * (weights.astype(jnp.float32) > 0).astype(jnp.int32)[:, :, None]
    is_target = jnp.max(slot, axis=1) > 0
    grid = jnp.max(slot * values.astype(jnp.int32)[:, :, None], axis=1)
    return grid, is_target


def electra_loss(task: Task, features, training: bool, key) -> Tuple[jax.Array, Dict]:
    """ElectraTask.loss_and_stats over the global batch (one Gumbel key per step)."""
    inputs = task.model_inputs(features)
    ids = features["input_ids"].astype(jnp.int32)
    positions, weights = features["masked_positions"], features["masked_weights"]
    gen_logits = task.generator(inputs, masked_positions=positions,
                                training=training)["logits"]                  # [B, P, V]
    ce_sum, gen_correct, gen_count = masked_lm_terms(gen_logits, features["masked_ids"], weights)
    gen_loss = divide_no_nan(ce_sum, gen_count)

    sampled = gumbel_argmax(gen_logits, key)                                   # [B, P]
    seq_len = ids.shape[1]
    sampled_grid, is_target = scatter_to_sequence(sampled, positions, weights, seq_len)
    original_grid, _ = scatter_to_sequence(features["masked_ids"], positions, weights, seq_len)
    original = jnp.where(is_target, original_grid, ids)                       # [B, L]
    disc_ids = jnp.where(is_target, sampled_grid, ids)
    labels = (disc_ids != original).astype(jnp.float32)                       # 1 = replaced

    disc_logits = task.discriminator(dict(inputs, input_ids=disc_ids),
                                     training=training)["logits"].astype(jnp.float32)  # [B, L]
    mask = features["attention_mask"].astype(jnp.float32)
    # tf.nn.sigmoid_cross_entropy_with_logits: max(x, 0) - x z + log(1 + exp(-|x|))
    bce = (jnp.maximum(disc_logits, 0.0) - disc_logits * labels
           + jnp.log1p(jnp.exp(-jnp.abs(disc_logits))))
    disc_count = jnp.sum(mask)
    disc_loss = divide_no_nan(jnp.sum(bce * mask), disc_count)
    predicted = (disc_logits > 0).astype(jnp.float32)
    loss = gen_loss + task.disc_weight * disc_loss
    return loss, {"loss": loss, "gen_loss": gen_loss, "disc_loss": disc_loss,
                  "gen_correct": gen_correct, "gen_count": gen_count,
                  "disc_correct": jnp.sum((predicted == labels).astype(jnp.float32) * mask),
                  "disc_count": disc_count, "replaced": jnp.sum(labels * mask),
                  "replaced_detected": jnp.sum(labels * predicted * mask)}


OBJECTIVES: Dict[str, Callable] = {"mlm": mlm_loss, "electra": electra_loss}


def objective_for(task: Task) -> Callable:
    """The loss function of a pretraining task, by its name."""
    if task.name not in OBJECTIVES:
        raise ValueError(f"the JAX engine trains {sorted(OBJECTIVES)}, not {task.name!r}")
    return OBJECTIVES[task.name]
