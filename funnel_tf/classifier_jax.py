"""FunnelTextClassifier's train step on the JAX backend, with the same non-finite guard as on
TensorFlow (funnel_tf.nonfinite_guard): a step whose loss or a gradient is NaN/inf keeps the old
weights and optimizer state, and its loss is left out of the reported mean.

JAX steps are pure functions of the trainer's state, so the guard's counters live in a Keras
Metric the classifier tracks (its variables travel in the state's metrics variables; it is never
reset between epochs and logs nothing); the TF guard's host callback reads them after a sync.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import keras
from keras.src.trainers.data_adapters import data_adapter_utils

from funnel_tf.nonfinite_guard import NonFiniteGuard, check_policy


class _GuardCounters(keras.metrics.Metric):
    """The guard's counters as metric variables: steps, bad steps, the first bad step, stop."""

    def __init__(self, nonfinite: str, name="nonfinite_guard"):
        super().__init__(name=name)
        ints = dict(shape=(), dtype="int32")  # JAX runs without x64
        self.steps = self.add_variable(name="steps", initializer="zeros", **ints)
        self.bad = self.add_variable(name="bad", initializer="zeros", **ints)
        self.first_bad = self.add_variable(name="first_bad", initializer=keras.initializers.Constant(-1), **ints)
        self.stop = self.add_variable(name="stop", initializer=keras.initializers.Constant(int(nonfinite == "stop")),
                                      **ints)  # 1: "stop", 0: "skip"

    def update_state(self, finite):
        """Count one step (`finite`: a bool scalar); returns whether its update may be applied."""
        steps = self.steps.value + 1
        self.steps.assign(steps)
        first_bad = self.first_bad.value
        self.first_bad.assign(jnp.where((first_bad < 0) & ~finite, steps, first_bad))
        bad = self.bad.value + (~finite).astype("int32")
        self.bad.assign(bad)
        return finite & ~((self.stop.value > 0) & (bad > 0))  # under "stop", nothing after a bad step

    def reset_state(self):
        """Kept across epochs (fit's start resets bad / first_bad through the guard's callback)."""

    def result(self):
        return {}  # read by the callback, not logged


class JaxNonFiniteGuard(NonFiniteGuard):
    """NonFiniteGuard's interface (policy, set_policy, callback) over `_GuardCounters`, whose
    values the host reads after syncing the model's JAX state."""

    def __init__(self, model, nonfinite: str = "stop", max_nonfinite: int = 100):  # noqa: super not called
        check_policy(nonfinite, max_nonfinite)
        self.model = model
        self.counters = _GuardCounters(nonfinite)
        self.max_nonfinite = max_nonfinite

    def _synced(self, variable):
        if getattr(self.model, "_jax_state", None):
            self.model.jax_state_sync()  # mid-epoch the values live in the trainer's state
        return variable

    steps = property(lambda self: self._synced(self.counters.steps))
    bad = property(lambda self: self._synced(self.counters.bad))
    first_bad = property(lambda self: self._synced(self.counters.first_bad))
    stop = property(lambda self: self._synced(self.counters.stop))


def train_step(model, state, data):
    """Keras' JAX train step (keras/src/backend/jax/trainer.py) with the guard: the optimizer's
    update is selected only when the loss and every gradient are finite."""
    trainable, non_trainable, optimizer_vars, metrics_vars = state
    x, y, sample_weight = data_adapter_utils.unpack_x_y_sample_weight(data)
    grad_fn = jax.value_and_grad(model.compute_loss_and_updates, has_aux=True)
    (_, aux), grads = grad_fn(trainable, non_trainable, metrics_vars, x, y, sample_weight, training=True,
                              optimizer_variables=optimizer_vars)
    loss, y_pred, non_trainable, metrics_vars = aux
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(loss))] +
                               [jnp.all(jnp.isfinite(g)) for g in jax.tree_util.tree_leaves(grads)]))
    new_trainable, new_optimizer_vars = model.optimizer.stateless_apply(optimizer_vars, grads, trainable)

    counters = model._nonfinite_guard.counters
    with keras.StatelessScope(state_mapping=list(zip(model.metrics_variables, metrics_vars))) as scope:
        ok = counters.update_state(finite)
        count = jnp.asarray(y_pred.shape[0], loss.dtype)
        model._loss_tracker.update_state(jnp.where(finite, loss, 0.0), sample_weight=jnp.where(finite, count, 0.0))
        logs = model.compute_metrics(x, y, y_pred, sample_weight)
    metrics_vars = [scope.get_current_value(v) if scope.get_current_value(v) is not None else v.value
                    for v in model.metrics_variables]

    def select(new, old):
        return [jnp.where(ok, n, o) for n, o in zip(new, old)]

    state = (select(new_trainable, trainable), non_trainable, select(new_optimizer_vars, optimizer_vars),
             metrics_vars)
    return logs, state
