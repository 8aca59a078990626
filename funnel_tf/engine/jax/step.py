"""The JAX train step: `steps` optimizer steps of a Task as one jit-compiled function over every
device, its state donated.

State (a pytree of arrays, replicated): the trainable and non-trainable values of the task's
models (non-trainable = dropout seed states), the optimizer's variables, the step and the count of
skipped steps. A host call loops the step (fori_loop, a traced step count: one compilation for
every host call) over a stack of global batches [steps_per_loop, B, ...] sharded
over the mesh's "data" axis, so XLA splits the batch across devices and sums the gradients: the
losses are global means whatever the device count (tasks/base.py's contract).

One step, as the TF engine's (engine/loop.py): forward + backward of the task's own keras.ops
loss (`task.local_normalizers` of the global batch, then `task.loss_and_stats` with the step's
PRNG key as its seed) through the models as Keras layers inside a StatelessScope, the global
norm of the gradient, clipping to `clip_norm` (tf.clip_by_global_norm's factor), the Keras
optimizer's `stateless_apply` (engine/optimization.FunnelAdamW: AdamW, warmup + decay,
layer-wise scales, the weight-decay exclusions), all skipped when the loss or the norm is not
finite.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Tuple

import jax
import jax.numpy as jnp
import keras
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from funnel_tf.tasks.base import Task

State = Dict[str, object]


def data_mesh(devices=None) -> Mesh:
    """A 1-D mesh "data" over `devices` (default: every device of every process)."""
    return Mesh(np.asarray(devices if devices is not None else jax.devices()), ("data",))


def task_variables(task: Task) -> Tuple[List, List]:
    """(trainable, non-trainable) Keras variables of the task's models, each once (ELECTRA's
    generator shares the discriminator's embeddings), in a fixed order."""
    trainable = list(task.trainable_variables)
    seen = {id(v) for v in trainable}
    other = []
    for model in task.models.values():
        for v in model.variables:
            if id(v) not in seen:
                seen.add(id(v))
                other.append(v)
    return trainable, other


class TrainStep:
    """The compiled chunk of steps of `task` (built) with `optimizer` (built for its trainable
    variables), on `mesh`. `seed` keys the task's sampling (ELECTRA's Gumbel noise) per
    step."""

    def __init__(self, task: Task, optimizer, clip_norm: float = 1.0, seed: int = 0,
                 mesh: Mesh = None):
        self.task, self.optimizer = task, optimizer
        self.clip_norm = float(clip_norm)
        self.seed = int(seed)
        self.mesh = mesh if mesh is not None else data_mesh()
        self.trainable, self.non_trainable = task_variables(task)
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        self.batch_sharding = NamedSharding(self.mesh, PartitionSpec(None, "data"))
        # outputs replicated: every process reads the state and stats from its own devices
        self._chunk = jax.jit(self._run_chunk, donate_argnums=(0,),
                              out_shardings=self.replicated)

    # ------------------------------------------------------------------ state
    def initial_state(self, step: int = 0, nonfinite: int = 0) -> State:
        """The state read from the Keras variables (fresh, restored or warm-started)."""
        state = {"trainable": [v.value for v in self.trainable],
                 "non_trainable": [v.value for v in self.non_trainable],
                 "optimizer": [v.value for v in self.optimizer.variables],
                 "step": jnp.asarray(step, jnp.int32),
                 "nonfinite": jnp.asarray(nonfinite, jnp.int32)}
        return jax.device_put(state, self.replicated)

    def write_back(self, state: State) -> None:
        """Assign the state's values to the Keras variables (for saving / export)."""
        for group, variables in (("trainable", self.trainable),
                                 ("non_trainable", self.non_trainable),
                                 ("optimizer", self.optimizer.variables)):
            for v, value in zip(variables, state[group]):
                v.assign(np.asarray(jax.device_get(value)))

    def shard_batches(self, batches: Mapping[str, np.ndarray]) -> Dict[str, jax.Array]:
        """This process's rows of `steps` global batches ({key: [steps, b, ...]}) as global
        arrays sharded over the mesh's data axis."""
        if jax.process_count() == 1:
            return jax.device_put(dict(batches), self.batch_sharding)
        out = {}
        for k, local in batches.items():
            shape = (local.shape[0], local.shape[1] * jax.process_count()) + local.shape[2:]
            out[k] = jax.make_array_from_process_local_data(self.batch_sharding, local, shape)
        return out

    def __call__(self, state: State, batches: Mapping[str, np.ndarray], steps: int = None):
        """Run the first `steps` (default: all) of the stacked batches -> (new state, per-step
        {stat: [len(batches)]}, "finite" among them; entries past `steps` are zeros). The step
        count is a traced value: one compilation serves every host call of the same stack size."""
        size = len(next(iter(batches.values())))
        steps = size if steps is None else int(steps)
        return self._chunk(state, self.shard_batches(batches), jnp.asarray(steps, jnp.int32))

    # ------------------------------------------------------------------ the compiled function
    def _loss(self, trainable, non_trainable, features, key):
        mapping = list(zip(self.trainable, trainable)) + list(zip(self.non_trainable,
                                                                  non_trainable))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            # one replica over the global batch: its normalizers are the global ones
            normalizers = self.task.local_normalizers(features)
            loss, stats = self.task.loss_and_stats(features, normalizers, training=True,
                                                   seed=key)
        updated = [scope.get_current_value(v) for v in self.non_trainable]
        updated = [old if new is None else new for old, new in zip(non_trainable, updated)]
        return loss, (stats, updated)

    def _one_step(self, carry: State, features):
        key = jax.random.fold_in(jax.random.key(self.seed), carry["step"])
        grad_fn = jax.value_and_grad(self._loss, has_aux=True)
        (loss, (stats, non_trainable)), grads = grad_fn(
            carry["trainable"], carry["non_trainable"], features, key)
        grads = [g.astype(jnp.float32) for g in grads]
        norm = jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in grads))
        if self.clip_norm > 0:  # tf.clip_by_global_norm's factor (1 below the threshold)
            scale = self.clip_norm * jnp.minimum(1.0 / norm, 1.0 / self.clip_norm)
            grads = [g * scale for g in grads]
        finite = jnp.logical_and(jnp.isfinite(loss), jnp.isfinite(norm))
        trainable, opt = self.optimizer.stateless_apply(carry["optimizer"], grads,
                                                        carry["trainable"])
        keep = lambda new, old: [jnp.where(finite, n, o) for n, o in zip(new, old)]  # noqa: E731
        out = {"trainable": keep(trainable, carry["trainable"]),
               "non_trainable": non_trainable,
               "optimizer": keep(opt, carry["optimizer"]),
               "step": carry["step"] + 1,
               "nonfinite": carry["nonfinite"] + (1 - finite.astype(jnp.int32))}
        stats = {k: jnp.asarray(v, jnp.float32) for k, v in stats.items()}
        stats["finite"] = finite
        stats["grad_norm"] = norm
        return out, stats

    def _run_chunk(self, state: State, batches, steps):
        size = jax.tree_util.tree_leaves(batches)[0].shape[0]

        def features(i):  # batch i of the stack
            return jax.tree_util.tree_map(
                lambda x: jax.lax.dynamic_index_in_dim(x, i, keepdims=False), batches)
        shapes = jax.eval_shape(self._one_step, state, features(0))[1]
        stats = jax.tree_util.tree_map(lambda s: jnp.zeros((size,) + s.shape, s.dtype), shapes)

        def body(i, carry):
            state, stats = carry
            state, one = self._one_step(state, features(i))
            return state, jax.tree_util.tree_map(lambda acc, v: acc.at[i].set(v), stats, one)
        return jax.lax.fori_loop(0, steps, body, (state, stats))
