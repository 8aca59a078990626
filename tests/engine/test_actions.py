"""The loop's actions (engine/actions.py): evaluating at marks, a stop asked for while an action
works, keeping the best value across restarts."""

import json
import os

import pytest

from funnel_tf.engine.actions import Action, Evaluate, KeepBest
from funnel_tf.engine.loop import Trainer

from . import toy
from .test_loop import make_trainer

FAST = dict(jit_compile=False, jit_update=False, log_every=10, save_every=0)


def with_actions(t, actions):
    return Trainer(t.strategy, t.objective, t.optimizer_fn, t.dataset_fn, t.config,
                   actions=actions)


class _Chunks(Action):
    """Records the step of every boundary the loop reaches."""

    def __init__(self):
        self.steps = []

    def at_boundary(self, b):
        self.steps.append(b.step)
        return False


def test_evaluate_runs_at_its_marks_and_host_calls_end_there(tmp_path):
    evaluated, seen = [], _Chunks()
    t = with_actions(make_trainer(tmp_path, steps=10, steps_per_loop=5, **FAST),
                     [Evaluate([7, 3, 10], evaluated.append), seen])
    result = t.train()
    assert result.step == 10 and not result.preempted
    assert evaluated == [3, 7]  # the last step is the run's to evaluate, not the action's
    assert seen.steps == [0, 3, 7, 10]  # steps_per_loop 5: 0-3, 3-7 (a mark), 7-10


@pytest.fixture(scope="module")
def stopped_while_evaluating(tmp_path_factory):
    """A run asked to stop while it evaluates at step 4: (result, steps evaluated, model_dir)."""
    model_dir = tmp_path_factory.mktemp("stopped")
    t = make_trainer(model_dir, steps=10, steps_per_loop=5, **FAST)
    evaluated = []

    def evaluate(step):  # SIGTERM while evaluating does this (engine/preemption.py)
        evaluated.append(step)
        t2.request_stop("SIGTERM")

    t2 = with_actions(t, [Evaluate([4, 8], evaluate)])
    return t2.train(), evaluated, model_dir


def test_a_resumed_run_evaluates_at_its_first_step_when_it_is_a_mark(tmp_path,
                                                                     stopped_while_evaluating):
    # resumed at a mark: whatever the stopped run did there, this run cannot know it evaluated
    part = toy.stopped_at(stopped_while_evaluating[2], tmp_path / "run", 4)
    evaluated = []
    t = with_actions(make_trainer(part, steps=6, **FAST), [Evaluate([4, 5], evaluated.append)])
    result = t.train()
    assert result.start_step == 4 and result.step == 6 and evaluated == [4, 5]


def test_a_stop_asked_for_while_evaluating_saves_and_returns_at_that_step(stopped_while_evaluating):
    result, evaluated, _ = stopped_while_evaluating
    assert result.preempted and result.step == 4 and evaluated == [4]
    assert result.checkpoint.endswith("ckpt-4")


def test_keep_best_saves_only_improvements_and_survives_a_restart(tmp_path):
    path = str(tmp_path / "best_result.json")
    saved = []
    keep = KeepBest("accuracy", path, saved.append)
    assert keep.best is None and keep.improves(0.1)
    assert keep.offer(2, 0.5, {"accuracy": 0.5})
    assert not keep.offer(4, 0.4, {"accuracy": 0.4}) and not keep.offer(5, 0.5, {})
    assert keep.offer(6, 0.7, {"accuracy": 0.7})
    assert saved == [2, 6]
    with open(path) as f:
        assert json.load(f) == {"step": 6, "metric": "accuracy", "value": 0.7,
                                "metrics": {"accuracy": 0.7}}
    again = KeepBest("accuracy", path, saved.append)
    assert again.best["step"] == 6 and not again.improves(0.7) and again.improves(0.71)


def test_keep_best_on_a_non_chief_writes_no_record(tmp_path):
    keep = KeepBest("f1", str(tmp_path / "best_result.json"), lambda step: None, is_chief=False)
    assert keep.offer(1, 0.2, {}) and keep.best["value"] == pytest.approx(0.2)
    assert not os.listdir(tmp_path)
