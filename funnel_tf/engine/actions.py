"""Side effects of the training loop as small actions it calls at host-call boundaries, as
Orbit's controller calls its train/eval actions: the non-finite policy, saving on preemption,
evaluating at marks, keeping the best model. The loop (loop.py) only trains, logs and saves
periodically; a run passes the actions it wants (`Trainer(..., actions=[...])`).

An action may hook two moments of a boundary: `after_steps(b)` right after the host call (before
the boundary's log and save: checks), and `at_boundary(b)` once the step's checkpoint is written
(work that may take long, such as an evaluation). `at_boundary` returning True ends the run as
preempted. `next_mark(step)` names a later step the next host call must stop at.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Callable, Optional, Sequence

import tensorflow as tf
from absl import logging

from funnel_tf.errors import UserError

NONFINITE_POLICIES = ("stop", "skip")


class NonFiniteLossError(UserError, RuntimeError):
    """Training hit a non-finite loss or gradient and the policy is "stop"."""


@dataclasses.dataclass
class Boundary:
    """Where the loop stands between two host calls."""

    step: int                       # global step reached
    train_steps: int                # the run's last step
    nonfinite_steps: int            # steps skipped so far for a non-finite loss / gradient
    checkpoint: object              # the loop's checkpointing.TrainingCheckpoint
    stop: bool = False              # every worker agreed to stop here (preemption, Ctrl-C)
    stop_reason: str = ""


class Action:
    """Base class: every hook does nothing."""

    def next_mark(self, step: int) -> Optional[int]:
        return None

    def after_steps(self, b: Boundary) -> None:
        return None

    def at_boundary(self, b: Boundary) -> bool:
        return False


class NonFinitePolicy(Action):
    """"stop": raise NonFiniteLossError at the first skipped step (its update was not applied;
    the last good checkpoint is intact). "skip": log each skip, raise after `max_nonfinite`."""

    def __init__(self, policy: str = "stop", max_nonfinite: int = 100, seen: int = 0):
        if policy not in NONFINITE_POLICIES:
            raise ValueError(f"nonfinite must be one of {NONFINITE_POLICIES}, got {policy!r}")
        self.policy, self.max_nonfinite, self.seen = policy, max_nonfinite, seen

    def after_steps(self, b: Boundary) -> None:
        new, total, step = b.nonfinite_steps - self.seen, b.nonfinite_steps, b.step
        if new <= 0:
            return
        self.seen = total
        latest = b.checkpoint.latest
        if self.policy == "stop":
            raise NonFiniteLossError(
                f"non-finite loss or gradient in the {new} step(s) before step {step}; the update "
                f"was not applied and training stopped. Last good checkpoint: "
                f"{latest or 'none (no checkpoint saved yet)'}. Lower the learning rate, "
                f"check the input, or pass --nonfinite=skip to skip such steps.")
        logging.warning("skipped %d step(s) with a non-finite loss/gradient before step %d "
                        "(%d so far)", new, step, total)
        if total > self.max_nonfinite:
            raise NonFiniteLossError(
                f"{total} steps skipped for non-finite loss/gradient (more than "
                f"max_nonfinite={self.max_nonfinite}); stopping at step {step}. Last good "
                f"checkpoint: {latest}")


class SaveIfPreempted(Action):
    """Once the workers agreed to stop (SIGTERM, Ctrl-C, another worker's notice): complete the
    step's checkpoint and end the run as preempted (Orbit's SaveCheckpointIfPreempted)."""

    def at_boundary(self, b: Boundary) -> bool:
        if not b.stop:
            return False
        ckpt = b.checkpoint
        if ckpt.saved_step != b.step:
            ckpt.save(wait=True)
        ckpt.wait()
        logging.warning("stopped at step %d on request (%s); restart with the same --model_dir "
                        "to resume", b.step, b.stop_reason)
        return True


class Evaluate(Action):
    """Call `evaluate(step)` at each of `marks` (sorted steps) before the last step, including a
    resumed run's first step (an evaluation a preemption cut short runs again there); the loop
    ends its host calls at the marks. The end of training is the run's to evaluate."""

    def __init__(self, marks: Sequence[int], evaluate: Callable[[int], object]):
        self.marks = sorted(set(int(m) for m in marks))
        self.evaluate = evaluate

    def next_mark(self, step: int) -> Optional[int]:
        return next((m for m in self.marks if m > step), None)

    def at_boundary(self, b: Boundary) -> bool:
        if b.step in self.marks and b.step < b.train_steps:
            self.evaluate(b.step)
        return False


class KeepBest:
    """The best value so far of one metric (higher is better), kept in a JSON record (step,
    metric, value, metrics) that survives restarts; `offer` saves the model when it improves.

    record_path: where the record lives (best_result.json); written by the chief only.
    save:        step -> None, writes the best model (before the record names it).
    """

    def __init__(self, metric: str, record_path: str, save: Callable[[int], object],
                 is_chief: bool = True):
        self.metric, self.record_path, self.save, self.is_chief = metric, record_path, save, \
            is_chief
        self._best: Optional[dict] = None
        self._loaded = False

    @property
    def best(self) -> Optional[dict]:
        if not self._loaded:
            self._loaded = True
            if tf.io.gfile.exists(self.record_path):
                with tf.io.gfile.GFile(self.record_path) as f:
                    self._best = json.loads(f.read())
        return self._best

    def improves(self, value: float) -> bool:
        return self.best is None or value > float(self.best["value"])

    def offer(self, step: int, value: float, metrics: dict) -> bool:
        """Keep (save the model, then the record) if `value` beats the best; True if it did."""
        if not self.improves(value):
            return False
        self._best = {"step": int(step), "metric": self.metric, "value": float(value),
                      "metrics": metrics}
        self.save(step)
        if self.is_chief:
            from funnel_tf.storage import atomic_write_text
            from funnel_tf import json_text

            atomic_write_text(self.record_path,
                              json_text.dumps(self._best, indent=2, sort_keys=True) + "\n")
        return True
