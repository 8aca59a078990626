"""The training step's metric sums: sync-on-read variables each replica adds its step's stats to
(inside the compiled step), which the host reads and resets at log boundaries."""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import tensorflow as tf


class Accumulators:
    """One SUM variable per stat the objective reports, plus counts of finite / skipped steps."""

    def __init__(self, names):
        on_read = tf.VariableSynchronization.ON_READ
        self.sums = {n: tf.Variable(0.0, trainable=False, synchronization=on_read,
                                    aggregation=tf.VariableAggregation.SUM, name=f"acc_{n}")
                     for n in names}
        first = tf.VariableAggregation.ONLY_FIRST_REPLICA
        self.steps = tf.Variable(0.0, trainable=False, synchronization=on_read,
                                 aggregation=first, name="acc_steps")
        self.nonfinite = tf.Variable(0.0, trainable=False, synchronization=on_read,
                                     aggregation=first, name="acc_nonfinite")

    def add(self, stats, finite) -> None:
        """Per replica, per step: the stats of a finite step (a skipped one adds 0 and counts)."""
        okf = tf.cast(finite, tf.float32)
        for name, var in self.sums.items():
            value = tf.cast(stats[name], tf.float32)
            var.assign_add(tf.where(finite, value, tf.zeros_like(value)))
        self.steps.assign_add(okf)
        self.nonfinite.assign_add(1.0 - okf)

    def read(self):
        return {n: float(v.numpy()) for n, v in self.sums.items()}, float(self.steps.numpy())

    def metrics(self, spec: Dict[str, Tuple[str, Optional[str]]]):
        """({name: sums[num] / (sums[den] or the finite step count)}, finite steps) for the
        objective's metric spec {name: (numerator stat, denominator stat or None)}."""
        sums, steps = self.read()
        out = {}
        for name, (num, den) in spec.items():
            d = steps if den is None else sums[den]
            out[name] = sums[num] / d if d else float("nan")
        return out, steps

    def reset(self):
        for v in list(self.sums.values()) + [self.steps]:
            v.assign(tf.zeros_like(v))
