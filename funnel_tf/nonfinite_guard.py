"""The Keras API's counterpart of the scripts' `--nonfinite`: a train step whose loss or a gradient
is not finite (NaN labels, an overflow) applies no update, so the weights keep their last finite
values; "stop" (the default) then ends fit with NonFiniteLossError naming the step, "skip" goes on
and counts the skipped steps (history["nonfinite_steps"]), giving up after `max_nonfinite`.

FunnelTextClassifier.train_step calls `NonFiniteGuard.apply` in place of the optimizer's
apply_gradients; `NonFiniteGuard.callback()` reads its counters on the host after each batch.
"""

from __future__ import annotations

from typing import Optional, Sequence

import keras
import tensorflow as tf
from absl import logging

from funnel_tf.errors import UserError
from funnel_tf.engine.actions import NONFINITE_POLICIES, NonFiniteLossError

__all__ = ["NONFINITE_POLICIES", "NonFiniteGuard", "NonFiniteLossError", "check_policy"]


def check_policy(nonfinite: str, max_nonfinite: int) -> None:
    if nonfinite not in NONFINITE_POLICIES:
        raise _PolicyError(f"nonfinite must be one of {NONFINITE_POLICIES}, got {nonfinite!r}")
    if isinstance(max_nonfinite, bool) or not isinstance(max_nonfinite, int) or max_nonfinite < 1:
        raise _PolicyError(f"max_nonfinite must be a positive int, got {max_nonfinite!r}")


class _PolicyError(UserError, ValueError):
    """A nonfinite policy that does not exist."""


class NonFiniteGuard:
    """Counters (variables, so a compiled step reads a changed policy without a retrace) and the
    guarded update. Kept in a plain object: Keras does not track them as model weights."""

    def __init__(self, nonfinite: str = "stop", max_nonfinite: int = 100):
        check_policy(nonfinite, max_nonfinite)
        agg = dict(trainable=False, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.steps = tf.Variable(0, dtype=tf.int64, name="nonfinite_guard_steps", **agg)
        self.bad = tf.Variable(0, dtype=tf.int64, name="nonfinite_guard_bad", **agg)
        self.first_bad = tf.Variable(-1, dtype=tf.int64, name="nonfinite_guard_first_bad", **agg)
        self.stop = tf.Variable(nonfinite == "stop", name="nonfinite_guard_stop", **agg)
        self.max_nonfinite = max_nonfinite

    @property
    def policy(self) -> str:
        return "stop" if bool(self.stop.numpy()) else "skip"

    def set_policy(self, nonfinite: str, max_nonfinite: int) -> None:
        check_policy(nonfinite, max_nonfinite)
        self.stop.assign(nonfinite == "stop")
        self.max_nonfinite = max_nonfinite

    def finite(self, loss, grads: Sequence[Optional[tf.Tensor]]) -> tf.Tensor:
        """True when the loss and every gradient are finite (a bool scalar)."""
        checks = [tf.reduce_all(tf.math.is_finite(loss))]
        checks += [tf.reduce_all(tf.math.is_finite(g)) for g in grads if g is not None]
        return tf.reduce_all(tf.stack(checks))

    def apply(self, optimizer, finite: tf.Tensor, grads, variables) -> None:
        """The optimizer's update when `finite` (and, under "stop", no earlier step of this fit was
        bad: a compiled multi-step execution must not go on past the bad step); counters always."""
        self.steps.assign_add(1)
        self.first_bad.assign(tf.where((self.first_bad < 0) & ~finite, self.steps, self.first_bad))
        self.bad.assign_add(tf.cast(~finite, tf.int64))
        if not optimizer.built:  # build outside the cond: no variable may be created in a branch
            optimizer.build(variables)

        def update():
            optimizer.apply_gradients(zip(grads, variables))
            return tf.constant(True)

        ok = finite & ~(self.stop & (self.bad > 0))
        tf.cond(ok, update, lambda: tf.constant(False))

    def callback(self) -> keras.callbacks.Callback:
        return _GuardCallback(self)


class _GuardCallback(keras.callbacks.Callback):
    """Host side: resets the counters for each fit, raises (stop) or warns (skip) after a batch
    that was skipped, and adds `nonfinite_steps` to each epoch's logs (the History)."""

    def __init__(self, guard: NonFiniteGuard):
        super().__init__()
        self.guard = guard
        self.start = self.epoch_start = 0
        self.epoch = 0
        self.reported = 0

    def on_train_begin(self, logs=None):
        self.guard.bad.assign(0)
        self.guard.first_bad.assign(-1)
        self.start = int(self.guard.steps.numpy())
        self.reported = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.epoch_start = int(self.guard.steps.numpy())

    def on_train_batch_end(self, batch, logs=None):
        bad = int(self.guard.bad.numpy())
        if bad <= self.reported:
            return
        first = int(self.guard.first_bad.numpy())
        if self.guard.policy == "stop":
            step = first - self.start
            in_epoch = first - self.epoch_start
            self.model.stop_training = True
            raise NonFiniteLossError(
                f"fit: the loss or a gradient was not finite at step {step} of this fit (epoch "
                f"{self.epoch + 1}, batch {in_epoch}); that update was not applied and training "
                f"stopped, so the weights hold their last finite values. Check that batch's labels "
                f"and inputs, lower the learning rate, or compile(nonfinite=\"skip\") to skip such steps")
        logging.warning("fit: skipped %d step(s) with a non-finite loss or gradient (%d in this fit)",
                        bad - self.reported, bad)
        self.reported = bad
        if bad > self.guard.max_nonfinite:
            self.model.stop_training = True
            raise NonFiniteLossError(
                f"fit: {bad} steps skipped for a non-finite loss or gradient (more than "
                f"max_nonfinite={self.guard.max_nonfinite}); stopped at epoch {self.epoch + 1}, the "
                f"weights hold their last finite values. Check the data and the learning rate")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["nonfinite_steps"] = int(self.guard.bad.numpy())
