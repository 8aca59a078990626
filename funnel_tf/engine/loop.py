"""The custom distributed training loop: `strategy.run` inside a `tf.function` that runs
`steps_per_loop` steps per host call, with checkpoints, progress, preemption and NaN handling.

One training step, per replica:
  1. sum the objective's loss normalisers (masked-token / real-token counts) across replicas, so
     each replica's loss is its share of the *global* mean (any replica count gives the same
     gradient as one device with the whole batch);
  2. forward + backward (XLA-compiled with `jit_compile`);
  3. sum gradients across replicas, clip them by their global norm (1.0: the norm of the global
     gradient, identical on every replica), and apply AdamW unless the loss or the gradient norm is
     not finite (then the update is skipped on every replica and counted).
Metric sums live in sync-on-read variables (accumulators.py), read by the host at log boundaries.

What is XLA-compiled: on the default / one-device strategy the whole replica step (including the
optimizer update), or with jit_compile=False the update alone (`jit_update`: clipping and AdamW in
one function behind a finite check on TF's kernels, and under mixed_bfloat16 the bf16 weight copies
the forward reads, see update.py / weight_copies.py); under MirroredStrategy / MultiWorkerMirroredStrategy the forward +
backward (cross-device collectives cannot sit inside an XLA cluster there); TPUStrategy compiles
everything.

Resume: checkpoints hold every model variable (including dropout seed states), the optimizer
(slots + iteration count) and the step. The input position comes back in one of two ways:
the tf.data iterator state itself (default strategy, when the pipeline can be serialised), or a
replay that rebuilds the input at the resume step (distributed iterators cannot be checkpointed in
TF 2.19-2.21): a dataset_fn that takes `start_batch` (pretraining's) starts there in O(1), skipping
serialized records it never parses or masks; any other dataset_fn has its consumed batches skipped.
Either is exact only if the input pipeline is deterministic for its seed; "restart" skips nothing.
Side effects live in actions the loop calls at host-call boundaries (actions.py): the non-finite
policy, saving on preemption (every platform saves and returns `preempted=True`; entry points exit
75; the signal handling, TF's preemption handler and the multi-worker stop agreement are
preemption.py's), and whatever a run adds (finetuning evaluates and keeps the best model).
A host call cannot be interrupted (Python runs a signal handler once it returns), so a save starts
up to one host call after the notice: keep `steps_per_loop` x step time well under the ~30 s a
preempted Cloud TPU VM gets (e.g. 100 steps of 0.1 s = 10 s, plus the save).
Restores fall back past unreadable checkpoints and refuse another objective's or config's
(checkpointing.TrainingCheckpoint); `Trainer.prepare()` does that before anything is written.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from funnel_tf import xla
from funnel_tf.errors import UserError
from funnel_tf.engine import run_lock
from funnel_tf.engine import checkpointing
from funnel_tf.engine.accumulators import Accumulators
from funnel_tf.engine.inputs import distributed_iterator
from funnel_tf.engine.actions import (NONFINITE_POLICIES, Action, Boundary, NonFinitePolicy,
                                      SaveIfPreempted)
from funnel_tf.engine.preemption import Preemption, PreemptionSaved
from funnel_tf.checkpoints import init_checkpoint
from funnel_tf.tasks.base import Task
from funnel_tf.engine.progress import ProgressLogger, format_duration
from funnel_tf.engine.strategy import strategy_info
from funnel_tf.engine.update import FusedUpdate
from funnel_tf.engine.weight_copies import maybe_weight_copies

DATA_RESUME_MODES = ("auto", "replay", "restart")


class CorruptInputError(UserError, RuntimeError):
    """The input pipeline read a corrupt or truncated record mid-training (tf DataLossError);
    the run stops with its last checkpoint intact. `detail`: TF's words for what it read."""

    def __init__(self, message: str, detail: str = "", where: str = ""):
        super().__init__(message)
        self.detail, self.where = detail, where


def data_loss_detail(error: BaseException) -> str:
    """The informative line of a tf.data DataLossError ("... truncated record at 1809 ...")
    rather than its first line ("Graph execution error:")."""
    lines = [re.sub(r"\{\{[^}]*\}\}|\[Op:[^\]]*\].*$", "", ln).strip(" \t'\"")
             for ln in str(error).splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith(("[[", "Detected at", "File "))]
    for ln in lines:
        if "record" in ln.lower() or "checksum" in ln.lower() or "corrupt" in ln.lower():
            return ln[:300]
    return (lines[-1] if lines else type(error).__name__)[:300]


@dataclasses.dataclass
class LoopConfig:
    """Knobs of the training loop (plain values; pretrain.py maps flags onto them)."""

    train_steps: int
    global_batch_size: int
    seq_len: int
    model_dir: str
    steps_per_loop: int = 100       # steps per host call (one tf.function call)
    log_every: int = 100            # steps between progress records
    save_every: int = 1000          # steps between checkpoints (0 = only at the end)
    keep_checkpoints: int = 5
    clip_norm: float = 1.0          # global-norm clipping of the summed gradient (0 = off)
    jit_compile: bool = True
    jit_update: bool = True         # without jit_compile: clipping + AdamW update as one XLA
                                    # function (default/one-device strategies; training/update.py)
    weight_copies: bool = True      # with that fused update under mixed_bfloat16: the forward reads
                                    # bf16 weight copies the update rewrites (no per-step casts)
    nonfinite: str = "stop"         # "stop": raise, keep the last good checkpoint; "skip": skip+count
    max_nonfinite: int = 100        # with "skip": give up after this many skipped steps
    seed: int = 0                   # base seed of the objective's stateless RNG (ELECTRA sampling)
    data_resume: str = "auto"       # "auto": checkpoint the tf.data iterator when possible, else
                                    # replay; "replay": skip the consumed batches; "restart": from 0
    warm_start: Optional[object] = None  # --init_checkpoint (fresh runs only): the run's Resolved
                                         # (checkpoints/resolver.py), resolved once; a path also works
    handle_sigterm: bool = True     # save and return on SIGTERM (unless TF's preemption handler
                                    # watches SIGTERM itself on this platform)
    handle_sigint: bool = True      # Ctrl-C: save and return (one host); a second Ctrl-C aborts
    async_checkpoint: Optional[bool] = None  # write checkpoints in the background (TF's async
                                    # checkpointing) while training goes on; None = on for TPU
                                    # (a save to gs:// would stall the chips), off elsewhere

    def validate(self):
        if self.train_steps < 1 or self.global_batch_size < 1 or self.seq_len < 1:
            raise ValueError(f"train_steps, global_batch_size and seq_len must be positive: {self}")
        if self.steps_per_loop < 1 or self.log_every < 1 or self.save_every < 0:
            raise ValueError("steps_per_loop and log_every must be >= 1 and save_every >= 0")
        if self.nonfinite not in NONFINITE_POLICIES:
            raise ValueError(f"nonfinite must be one of {NONFINITE_POLICIES}, got {self.nonfinite!r}")
        if self.data_resume not in DATA_RESUME_MODES:
            raise ValueError(f"data_resume must be one of {DATA_RESUME_MODES}, "
                             f"got {self.data_resume!r}")


@dataclasses.dataclass
class TrainResult:
    step: int                      # global step reached
    history: List[Dict[str, float]]  # one record per log window
    checkpoint: Optional[str]      # newest checkpoint path
    preempted: bool = False
    nonfinite_steps: int = 0
    start_step: int = 0


class Trainer:
    """Builds everything inside the strategy scope and runs the loop.

    strategy:      a tf.distribute.Strategy (see strategy.make_strategy).
    objective:     a `tasks.base.Task` (not yet built).
    optimizer_fn:  variables -> built optimizer (see optimization.make_optimizer); called in scope.
    dataset_fn:    tf.distribute.InputContext -> tf.data.Dataset of *per-replica* batches (use
                   `ctx.get_per_replica_batch_size(global)` and shard by `ctx.input_pipeline_id`).
    actions:       more `actions.Action`s to call at host-call boundaries, after the loop's own
                   (the non-finite policy, then saving on preemption), e.g. actions.Evaluate.
    """

    def __init__(self, strategy: tf.distribute.Strategy, objective: Task,
                 optimizer_fn: Callable, dataset_fn: Callable, config: LoopConfig,
                 actions: Sequence[Action] = ()):
        config.validate()
        info = strategy_info(strategy)
        if config.jit_compile and info.kind != "tpu" and not xla.effective_jit_compile(
                True, "the train step"):
            config = dataclasses.replace(config, jit_compile=False)  # no XLA:CPU (TPU build)
        self.strategy = strategy
        self.objective = objective
        self.optimizer_fn = optimizer_fn
        self.dataset_fn = dataset_fn
        self.config = config
        self.info = info
        if config.global_batch_size % self.info.num_replicas:
            raise ValueError(f"global batch size {config.global_batch_size} is not divisible by "
                             f"the {self.info.num_replicas} replicas")
        with strategy.scope():
            objective.build()
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step",
                                    aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            self.variables = objective.trainable_variables
            self.optimizer = optimizer_fn(self.variables)
            self.acc = Accumulators(sorted({s for pair in objective.metrics.values()
                                             for s in pair if s}))
            self._fused = None
            if self._uses_fused_update():
                copies = maybe_weight_copies(self.variables, _compute_dtype(objective),
                                             config.weight_copies)
                self._fused = FusedUpdate(self.optimizer, self.variables, config.clip_norm, copies)
        self.preemption = Preemption(strategy, info, config.handle_sigterm, config.handle_sigint)
        self.actions: List[Action] = list(actions)
        self._train_fn = None
        self._prepared: Optional[_Prepared] = None

    # ------------------------------------------------------------------ the step
    def _uses_fused_update(self) -> bool:
        """jit_compile off, jit_update on, one replica: the update is one XLA function."""
        cfg = self.config
        return (not cfg.jit_compile and cfg.jit_update
                and self.info.kind in ("default", "one_device"))

    def _make_replica_step(self):
        if self._fused is not None:
            return self._make_fused_replica_step()
        objective, optimizer, cfg = self.objective, self.optimizer, self.config
        variables = self.variables
        kind = self.info.kind

        def forward_backward(features, normalizers, seed):
            with tf.GradientTape() as tape:
                loss, stats = objective.loss_and_stats(features, normalizers, training=True,
                                                       seed=seed)
            grads = tape.gradient(loss, variables)
            grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
                     for g, v in zip(grads, variables)]
            return loss, stats, grads

        # Collective-free part under XLA when the whole step cannot be (see module docstring).
        if cfg.jit_compile and kind in ("mirrored", "multi_worker"):
            forward_backward = tf.function(forward_backward, jit_compile=True)

        def apply(grads):
            optimizer.apply(grads, variables)

        def guarded_apply(grads, finite):
            # A cond whose branch calls merge_call must run in cross-replica context (as Keras'
            # LossScaleOptimizer does); strategies without merge_call take the direct path.
            if tf.__internal__.distribute.strategy_supports_no_merge_call():
                tf.cond(finite, lambda: apply(grads), lambda: None)
                return

            def cross(distribution, grads, finite):
                ok = distribution.experimental_local_results(finite)[0]
                tf.cond(ok, lambda: distribution.extended.call_for_each_replica(
                    apply, args=(grads,)), lambda: None)
            tf.distribute.get_replica_context().merge_call(cross, args=(grads, finite))

        def replica_step(features, step):
            ctx = tf.distribute.get_replica_context()
            normalizers = self._global_normalizers(features)
            loss, stats, grads = forward_backward(features, normalizers, self._seed(step))
            reduced = ctx.all_reduce(tf.distribute.ReduceOp.SUM, [loss] + list(grads))
            global_loss, grads = reduced[0], reduced[1:]
            if cfg.clip_norm > 0:
                grads, norm = tf.clip_by_global_norm(grads, cfg.clip_norm)
            else:
                norm = tf.linalg.global_norm(grads)
            finite = tf.logical_and(tf.math.is_finite(global_loss), tf.math.is_finite(norm))
            guarded_apply(grads, finite)
            self.acc.add(stats, finite)

        if cfg.jit_compile and kind in ("default", "one_device"):
            replica_step = tf.function(replica_step, jit_compile=True)
        return replica_step

    def _make_fused_replica_step(self):
        """Forward + backward on TF's kernels, then the whole update as one XLA function
        (training/update.py); one replica, so there is nothing to all-reduce."""
        objective, fused = self.objective, self._fused

        def replica_step(features, step):
            normalizers = self._global_normalizers(features)
            with tf.GradientTape() as tape:
                with fused.forward(tape):
                    loss, stats = objective.loss_and_stats(features, normalizers, training=True,
                                                           seed=self._seed(step))
            direct, through_copy = fused.gradients(tape, loss)
            _, finite = fused(direct, through_copy, loss)
            self.acc.add(stats, finite)
        return replica_step

    def _global_normalizers(self, features):
        ctx = tf.distribute.get_replica_context()
        local = {k: tf.identity(v) for k, v in self.objective.local_normalizers(features).items()}
        return ctx.all_reduce(tf.distribute.ReduceOp.SUM, local)

    def _seed(self, step):
        ctx = tf.distribute.get_replica_context()
        return tf.stack([tf.cast(step % (2 ** 31 - 1), tf.int32) + self.config.seed,
                         tf.cast(ctx.replica_id_in_sync_group, tf.int32)])

    def _make_train_fn(self):
        replica_step = self._make_replica_step()
        strategy, step = self.strategy, self.step

        @tf.function
        def train_loop(iterator, num_steps):
            for _ in tf.range(num_steps):
                features = next(iterator)
                strategy.run(replica_step, args=(features, step.read_value()))
                step.assign_add(1)
        return train_loop

    def _distributed_iterator(self, skip_batches: int):
        return distributed_iterator(self.strategy, self.dataset_fn, self.info.num_replicas,
                                    skip_batches)

    # ------------------------------------------------------------------ host loop
    def _learning_rate(self) -> float:
        lr = self.optimizer.learning_rate
        return float(lr.numpy() if hasattr(lr, "numpy") else lr)

    def request_stop(self, reason: str = "request") -> None:
        """Ask the loop to save a checkpoint and return at the next host-call boundary (what the
        SIGTERM and first SIGINT handlers do; thread-safe)."""
        self.preemption.request(reason)

    def _async_checkpoint(self) -> bool:
        """Whether saves are asynchronous: LoopConfig.async_checkpoint, by default on for TPU only.
        TF's async checkpointing copies every variable kind our strategies make (resource,
        mirrored / MWMS / TPU distributed variables) and tf.data iterators to host memory in eager
        mode, so any strategy may turn it on; it costs a host copy of the model + optimizer."""
        wanted = self.config.async_checkpoint
        return self.info.kind == "tpu" if wanted is None else bool(wanted)

    def prepare(self) -> Optional[str]:
        """Open model_dir's checkpoints and restore the newest readable one (or warm-start a fresh
        run); returns the restored path or None. Raises a UserError (CheckpointMismatchError,
        CheckpointReadError, a warm-start CheckpointError) before anything in model_dir is
        written, so entry points call it before writing their own files; `train()` calls it when
        they did not. Idempotent."""
        if self._prepared is not None:
            return self._prepared.restored
        cfg, info = self.config, self.info
        items = dict(self.objective.models, optimizer=self.optimizer)
        iterator = None
        if cfg.data_resume == "auto" and info.kind == "default":
            iterator = self._distributed_iterator(0)  # plain tf.data iterator: checkpointable
        ckpt = checkpointing.TrainingCheckpoint(cfg.model_dir, items, self.step,
                                                keep=cfg.keep_checkpoints, is_chief=info.is_chief,
                                                data_iterator=iterator,
                                                async_save=self._async_checkpoint())
        restored = ckpt.restore_latest()
        if restored is None and cfg.warm_start:
            logging.info("warm start: %s", init_checkpoint.load_init_checkpoint(
                self.objective.backbone, cfg.warm_start, self.objective.models))
        self._prepared = _Prepared(ckpt, iterator, restored)
        return restored

    def train(self) -> TrainResult:
        cfg, info = self.config, self.info
        logging.info("strategy %s; global batch %d (%d per replica); %d trainable variables "
                     "(%.2fM parameters)", info.describe(), cfg.global_batch_size,
                     cfg.global_batch_size // info.num_replicas, len(self.variables),
                     sum(int(np.prod(v.shape)) for v in self.variables) / 1e6)
        self.prepare()
        ckpt, iterator = self._prepared.checkpoint, self._prepared.iterator
        with self.preemption.watching(ckpt):  # TF's handler (it restores again), signal handlers
            start = int(self.step.numpy())
            if self._fused is not None and self._fused.weight_copies is not None:
                self._fused.weight_copies.refresh()  # restored / warm-started / initial weights
            if iterator is None or not ckpt.saves_data:
                skip = start if (start and cfg.data_resume in ("auto", "replay")) else 0
                if skip:
                    logging.info("resuming input at step %d: it starts %d batch(es) per replica "
                                 "in (the iterator state is not checkpointable here)", start, skip)
                elif start:
                    logging.warning("data_resume=restart: the input starts again from its "
                                    "beginning")
                iterator = self._distributed_iterator(skip)
            if start >= cfg.train_steps:
                logging.info("already at step %d >= train_steps %d: nothing to do", start,
                             cfg.train_steps)
                return TrainResult(start, [], ckpt.latest, start_step=start)
            return self._loop(ckpt, iterator, start)

    def _loop(self, ckpt, iterator, start: int) -> TrainResult:
        """The host loop: host calls of `_chunk` steps; at each boundary the actions' checks,
        progress, the periodic save and the workers' stop agreement, then the actions' work."""
        cfg, info = self.config, self.info
        train_fn = self._make_train_fn()
        progress = ProgressLogger(cfg.train_steps, cfg.global_batch_size, cfg.seq_len,
                                  cfg.model_dir, write=info.is_chief)
        actions = [NonFinitePolicy(cfg.nonfinite, cfg.max_nonfinite), SaveIfPreempted()]
        actions += self.actions
        history, step, compiled, nonfinite, stop = [], start, False, 0, False
        self.acc.reset()
        progress.start(step)
        failing = False

        def result(preempted: bool) -> TrainResult:
            return TrainResult(step, history, ckpt.latest, preempted=preempted,
                               nonfinite_steps=nonfinite, start_step=start)

        def boundary() -> Boundary:
            return Boundary(step, cfg.train_steps, nonfinite, ckpt, stop,
                            self.preemption.describe() if stop else "")
        try:
            while True:
                b = boundary()
                for action in actions:  # SaveIfPreempted before any other work
                    if action.at_boundary(b):
                        return result(preempted=True)
                if step >= cfg.train_steps:
                    break
                n = self._chunk(step)
                try:
                    self.preemption.run(train_fn, iterator, tf.constant(n, tf.int32))
                    step = int(self.step.numpy())  # waits for the device
                except PreemptionSaved:  # TF's handler saved (through ckpt.save) on a notice
                    step = int(self.step.numpy())
                    logging.warning("stopped at step %d on TF's preemption notice; restart "
                                    "with the same --model_dir to resume", step)
                    return result(preempted=True)
                except tf.errors.DataLossError as e:
                    raise self._corrupt_input(e, step, n, ckpt) from None
                if not compiled:
                    progress.mark_compiled(step)
                    compiled = True
                nonfinite = int(round(float(self.acc.nonfinite.numpy())))
                b = boundary()
                for action in actions:
                    action.after_steps(b)
                if step % cfg.log_every == 0 or step == cfg.train_steps:
                    metrics, steps = self.acc.metrics(self.objective.metrics)
                    if steps > 0:
                        history.append(progress.log(step, metrics, self._learning_rate(),
                                                    {"nonfinite_steps": nonfinite}))
                    self.acc.reset()
                save_due = ((cfg.save_every and step % cfg.save_every == 0)
                            or step == cfg.train_steps) and ckpt.saved_step != step
                # Every worker reaches every boundary: all of them stop at the same step, and
                # all of them stop when the chief's run lock was lost before a save.
                lost = self._check_lock() if save_due else None
                stop, any_lost = self.preemption.agree(lost is not None)
                if any_lost:
                    raise lost or run_lock.RunLockLostError(
                        f"{cfg.model_dir}: the chief worker's run lock was removed or taken "
                        f"by another run; stopped before writing (see the chief's log)")
                if save_due:
                    # never the same step twice (a 0-step host call on a stop); the last
                    # one and a preemption's are complete before the run returns
                    ckpt.save(wait=stop or step == cfg.train_steps)
        except BaseException:
            failing = True
            raise
        finally:
            progress.close()
            self._finish_writes(ckpt, failing)
        took = progress.compile_seconds
        logging.info("done: step %d; checkpoint %s%s", step, ckpt.latest,
                     f" (first loop incl. compile {format_duration(took)})" if took else "")
        return result(preempted=False)

    @staticmethod
    def _corrupt_input(e: tf.errors.DataLossError, step: int, n: int, ckpt) -> Exception:
        detail = data_loss_detail(e)
        where = (f"training stopped within steps {step + 1}-{step + n}; " + (
            f"last checkpoint {ckpt.latest} (intact)" if ckpt.latest
            else "no checkpoint saved yet"))
        return CorruptInputError(
            f"the training input holds a corrupt or truncated record ({detail}); "
            f"{where}: fix or remove the bad file and rerun", detail=detail, where=where)

    @staticmethod
    def _finish_writes(ckpt, failing: bool) -> None:
        """Wait for an async save in flight; its failure is raised unless the run is already
        failing with another error (then it is logged: the first error is the one to see)."""
        try:
            ckpt.wait()
        except checkpointing.CheckpointWriteError as e:
            if not failing:
                raise
            logging.error("%s", e)

    def _check_lock(self) -> Optional[run_lock.RunLockLostError]:
        """Multi-worker chief, before a save: the run lock error to share with every worker (the
        save itself checks it too, see checkpointing.py); None when it is still held."""
        if not (self.info.kind == "multi_worker" and self.info.num_workers > 1
                and self.info.is_chief):
            return None
        try:
            run_lock.verify_held(self.config.model_dir)
        except run_lock.RunLockLostError as e:
            return e
        return None

    def _chunk(self, step: int) -> int:
        """Steps for the next host call: up to steps_per_loop, stopping at log/save/end marks and
        the actions' marks. With actions, a stop requested while they worked (SIGTERM during an
        evaluation) takes 0 steps: the boundary saves and stops at `step`; the workers agree on
        it first (one worker's notice would otherwise leave it out of the others' host call)."""
        cfg = self.config
        if self.actions and self.preemption.agree(False)[0]:
            return 0
        marks = [cfg.train_steps, (step // cfg.log_every + 1) * cfg.log_every]
        if cfg.save_every:
            marks.append((step // cfg.save_every + 1) * cfg.save_every)
        marks += [m for m in (a.next_mark(step) for a in self.actions) if m is not None]
        return max(1, min(cfg.steps_per_loop, min(marks) - step))


@dataclasses.dataclass
class _Prepared:
    """What `Trainer.prepare()` opened: the checkpoint, the (checkpointable) input iterator, and
    the restored checkpoint's path (None: a fresh run)."""
    checkpoint: checkpointing.TrainingCheckpoint
    iterator: Optional[object]
    restored: Optional[str]


def _compute_dtype(objective: Task):
    """The dtype the objective's models compute in (bfloat16 under mixed_bfloat16)."""
    model = next(iter(objective.models.values()))
    return model.dtype_policy.compute_dtype
