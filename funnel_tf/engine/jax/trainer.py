"""The JAX engine's host loop: host calls of up to `steps_per_loop` compiled steps (step.py), the
input from the tf.data pipeline as numpy, progress (metrics.jsonl, TensorBoard), periodic and final
checkpoints (checkpoints.py), the non-finite policy (engine/actions.NonFinitePolicy), more actions
at host-call boundaries (engine/actions: finetuning's Evaluate) and SIGTERM / Ctrl-C: save at the
next host-call boundary and return `preempted=True`.

Knobs are the TF engine's `loop.LoopConfig` (jit_compile / jit_update / weight_copies do not apply:
the whole step is always one XLA function here)."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import jax
import numpy as np
from absl import logging

from funnel_tf.checkpoints import init_checkpoint
from funnel_tf.engine.actions import Action, Boundary, NonFinitePolicy
from funnel_tf.engine.jax import distributed
from funnel_tf.engine.jax.checkpoints import JaxCheckpoints
from funnel_tf.engine.jax.step import TrainStep
from funnel_tf.engine.loop import LoopConfig, TrainResult
from funnel_tf.engine.progress import ProgressLogger
from funnel_tf.tasks.base import Task


@contextlib.contextmanager
def stop_on_signals(flag: threading.Event, sigterm: bool = True, sigint: bool = True):
    """SIGTERM / a first Ctrl-C set `flag` (the loop saves and returns at its next boundary); a
    second Ctrl-C raises KeyboardInterrupt. Main thread only (elsewhere: nothing installed)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}

    def handler(signum, frame):
        if signum == signal.SIGINT and flag.is_set():
            raise KeyboardInterrupt
        logging.warning("signal %d: saving a checkpoint at the next host-call boundary", signum)
        flag.set()
    for sig, wanted in ((signal.SIGTERM, sigterm), (signal.SIGINT, sigint)):
        if wanted:
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class JaxTrainer:
    """Trains `task` (built) with `optimizer` (built for its trainable variables).

    batches_fn: start_batch -> iterator of this process's batches ({key: numpy [b, ...]}), from
                batch `start_batch` on (pretraining's dataset_fn, as numpy).
    learning_rate_fn: step -> learning rate (for the progress records).
    actions: engine.actions.Action's called at host-call boundaries (the TF loop's contract:
             host calls end at their next_mark; at_boundary runs between host calls, including
             the first; a stop requested while they work saves at that step). Actions that read
             the Keras variables call `write_back()` first.
    """

    def __init__(self, task: Task, optimizer, batches_fn: Callable[[int], Iterator],
                 config: LoopConfig, learning_rate_fn: Callable[[int], float],
                 is_chief: bool = True, mesh=None, actions: Sequence[Action] = ()):
        config.validate()
        self.actions: List[Action] = list(actions)
        self.task, self.optimizer, self.config = task, optimizer, config
        self.batches_fn, self.learning_rate_fn = batches_fn, learning_rate_fn
        self.is_chief = is_chief
        self.step_fn = TrainStep(task, optimizer, config.clip_norm, config.seed, mesh=mesh)
        self.checkpoints = JaxCheckpoints(config.model_dir, config.keep_checkpoints,
                                          write=is_chief)
        self.stop_requested = threading.Event()
        self.state = None
        self._prepared = False
        self.restored: Optional[str] = None

    def request_stop(self) -> None:
        self.stop_requested.set()

    # ------------------------------------------------------------------ state <-> checkpoints
    def _groups(self, values: Optional[Dict] = None) -> Dict[str, list]:
        s = self.step_fn
        variables = {"trainable": s.trainable, "non_trainable": s.non_trainable,
                     "optimizer": list(self.optimizer.variables)}
        if values is None:
            return {g: [(v.path, tuple(v.shape)) for v in vs] for g, vs in variables.items()}
        return {g: [(v.path, np.asarray(jax.device_get(x))) for v, x in zip(vs, values[g])]
                for g, vs in variables.items()}

    def prepare(self) -> Optional[str]:
        """Restore the newest readable checkpoint (or warm-start a fresh run); a checkpoint of
        another model is a CheckpointMismatchError, before anything is written. Idempotent."""
        if self._prepared:
            return self.restored
        found = self.checkpoints.restore_latest(self._groups())
        step = nonfinite = 0
        if found is not None:
            step, nonfinite, groups = found
            for g, variables in (("trainable", self.step_fn.trainable),
                                 ("non_trainable", self.step_fn.non_trainable),
                                 ("optimizer", self.optimizer.variables)):
                for v, value in zip(variables, groups[g]):
                    v.assign(value)
            self.restored = self.checkpoints.latest
            logging.info("restored %s (step %d)", self.restored, step)
        elif self.config.warm_start:
            logging.info("warm start: %s", init_checkpoint.load_init_checkpoint(
                self.task.backbone, self.config.warm_start, self.task.models))
        self.state = self.step_fn.initial_state(step, nonfinite)
        self._prepared = True
        return self.restored

    def save(self) -> Optional[str]:
        step = int(self.state["step"])
        if self.checkpoints.saved_step == step:
            return self.checkpoints.latest
        return self.checkpoints.save(step, int(self.state["nonfinite"]), self._groups(self.state))

    def write_back(self) -> None:
        """The trained values into the Keras variables (export, evaluation)."""
        self.step_fn.write_back(self.state)

    # ------------------------------------------------------------------ the loop
    def _chunk(self, step: int) -> int:
        cfg = self.config
        marks = [cfg.train_steps, (step // cfg.log_every + 1) * cfg.log_every]
        if cfg.save_every:
            marks.append((step // cfg.save_every + 1) * cfg.save_every)
        marks += [m for m in (a.next_mark(step) for a in self.actions) if m is not None]
        return max(1, min(cfg.steps_per_loop, min(marks) - step))

    def _stack(self, iterator, n: int) -> Dict[str, np.ndarray]:
        """The next `n` batches stacked to steps_per_loop rows (the last repeated, not run)."""
        rows = [next(iterator) for _ in range(n)]
        rows += [rows[-1]] * (self.config.steps_per_loop - n)
        return {k: np.stack([r[k] for r in rows]) for k in rows[0]}

    def _stop(self, step: int) -> bool:
        """Save and return True when any process was asked to stop."""
        if not distributed.agree(self.stop_requested.is_set()):
            return False
        self.save()
        logging.warning("stopped at step %d; restart with the same --model_dir to resume", step)
        return True

    def train(self) -> TrainResult:
        cfg = self.config
        self.prepare()
        start = step = int(self.state["step"])
        if start >= cfg.train_steps:
            logging.info("already at step %d >= train_steps %d: nothing to do", start,
                         cfg.train_steps)
            return TrainResult(start, [], self.checkpoints.latest, start_step=start)
        skip = start if cfg.data_resume in ("auto", "replay") else 0
        iterator = self.batches_fn(skip)
        progress = ProgressLogger(cfg.train_steps, cfg.global_batch_size, cfg.seq_len,
                                  cfg.model_dir, write=self.is_chief)
        policy = NonFinitePolicy(cfg.nonfinite, cfg.max_nonfinite,
                                 seen=int(self.state["nonfinite"]))
        history: List[Dict[str, float]] = []
        sums: Dict[str, float] = {}
        window_steps, compiled = 0, False
        progress.start(step)

        def result(preempted: bool) -> TrainResult:
            return TrainResult(step, history, self.checkpoints.latest, preempted=preempted,
                               nonfinite_steps=int(self.state["nonfinite"]), start_step=start)
        with stop_on_signals(self.stop_requested, cfg.handle_sigterm, cfg.handle_sigint):
            try:
                while step < cfg.train_steps:
                    # every process stops at the same step (a signal may reach one host first)
                    if self._stop(step):
                        return result(preempted=True)
                    if self.actions:
                        b = Boundary(step, cfg.train_steps, int(self.state["nonfinite"]),
                                     self.checkpoints)
                        for action in self.actions:
                            action.at_boundary(b)
                        if self._stop(step):  # requested while an action worked
                            return result(preempted=True)
                    n = self._chunk(step)
                    self.state, stats = self.step_fn(self.state, self._stack(iterator, n), n)
                    stats = {k: np.asarray(v)[:n] for k, v in jax.device_get(stats).items()}
                    step = int(self.state["step"])
                    if not compiled:
                        progress.mark_compiled(step)
                        compiled = True
                    finite = np.asarray(stats.pop("finite"), bool)
                    for k, v in stats.items():
                        sums[k] = sums.get(k, 0.0) + float(np.sum(np.asarray(v)[finite]))
                    window_steps += int(finite.sum())
                    policy.after_steps(Boundary(step, cfg.train_steps,
                                                int(self.state["nonfinite"]), self.checkpoints))
                    if step % cfg.log_every == 0 or step == cfg.train_steps:
                        if window_steps:
                            metrics = {name: (sums[num] / sums[den] if den else
                                              sums[num] / window_steps) if (
                                                  not den or sums.get(den)) else 0.0
                                       for name, (num, den) in self.task.metrics.items()}
                            history.append(progress.log(
                                step, metrics, self.learning_rate_fn(step),
                                {"nonfinite_steps": int(self.state["nonfinite"])}))
                        sums, window_steps = {}, 0
                    if (cfg.save_every and step % cfg.save_every == 0) or step == cfg.train_steps:
                        self.save()
            finally:
                progress.close()
                self.checkpoints.wait()  # the async save is on disk before the run returns
        return result(preempted=False)
