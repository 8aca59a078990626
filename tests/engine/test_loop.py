"""The training loop: learning, distribution equivalence, exact resume, NaN policy, stop requests,
XLA + mixed_bfloat16. Fast tests use the stand-in objective in toy.py; the real-Funnel ones are slow."""

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from funnel_tf.engine import loop as loop_lib
from funnel_tf.engine.actions import NonFiniteLossError
from funnel_tf.engine.loop import LoopConfig, Trainer
from funnel_tf.engine.optimization import WarmupLinearDecay, make_optimizer
from funnel_tf.engine.progress import read_metrics
from funnel_tf.engine.precision import set_precision
from funnel_tf.engine.strategy import make_strategy

from . import toy

BATCH = 8


def make_trainer(model_dir, strategy=None, steps=6, objective=None, data=None, lr=3e-2, **kw):
    keras.utils.set_random_seed(1)  # same initial weights in every trainer
    strategy = strategy or make_strategy("default")
    kw.setdefault("steps_per_loop", 2)
    kw.setdefault("log_every", 1)
    kw.setdefault("save_every", 3)
    cfg = LoopConfig(train_steps=steps, global_batch_size=BATCH, seq_len=toy.L,
                     model_dir=str(model_dir), **kw)
    schedule = WarmupLinearDecay(lr, 2, max(steps, 2))
    return Trainer(strategy, objective or toy.ToyObjective(),
                   lambda vs: make_optimizer(vs, schedule, weight_decay=0.01),
                   toy.dataset_fn(BATCH, data), cfg)


def losses(result):
    return {int(r["step"]): r["loss"] for r in result.history}


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    """The toy run several tests compare with or resume from (read-only: they copy its folder):
    6 steps, dropout on, checkpoints at 3 and 6, the step and the update on TF's kernels."""
    model_dir = tmp_path_factory.mktemp("plain")
    t = make_trainer(model_dir, steps=6, jit_compile=False, jit_update=False)
    return t, t.train(), model_dir


def test_loss_falls_and_outputs_are_written(tmp_path):
    t = make_trainer(tmp_path, steps=40, steps_per_loop=10, log_every=10, save_every=20)
    result = t.train()
    assert result.step == 40 and result.start_step == 0
    first, last = result.history[0], result.history[-1]
    assert last["loss"] < 0.8 * first["loss"]
    assert last["mlm_accuracy"] > first["mlm_accuracy"]
    for key in ("steps_per_sec", "examples_per_sec", "tokens_per_sec", "eta_sec", "learning_rate"):
        assert key in last
    assert last["examples_per_sec"] == pytest.approx(last["steps_per_sec"] * BATCH)
    assert [r["step"] for r in read_metrics(str(tmp_path))] == [10, 20, 30, 40]
    assert os.listdir(tmp_path / "train")  # TensorBoard event file
    assert result.checkpoint.endswith("ckpt-40")
    assert sorted(os.listdir(tmp_path / "checkpoints"))[0].startswith("checkpoint")
    assert int(t.optimizer.iterations.numpy()) == 40


def test_chunks_stop_at_log_save_and_end(tmp_path):
    t = make_trainer(tmp_path, steps=11, steps_per_loop=4, log_every=3, save_every=5)
    steps, chunks = 0, []
    while steps < 11:
        chunks.append(t._chunk(steps))
        steps += chunks[-1]
    assert chunks == [3, 2, 1, 3, 1, 1]  # -> 3, 5, 6, 9, 10, 11


def test_mirrored_two_replicas_match_one_device(tmp_path, mirrored):
    """Same global batch and seed: per-step losses agree to float32 round-off (rtol 1e-5), with
    clipping active (clip_norm 0.05 < gradient norm), which per-replica clipping would break."""
    common = dict(steps=6, steps_per_loop=1, save_every=0, clip_norm=0.05,
                  objective=None)
    single = make_trainer(tmp_path / "one", jit_compile=False, jit_update=False,  # no compile
                          **{**common, "objective": toy.ToyObjective(dropout=0.0)}).train()
    two = make_trainer(tmp_path / "two", strategy=mirrored, **{
        **common, "objective": toy.ToyObjective(dropout=0.0)}).train()
    a, b = losses(single), losses(two)
    assert sorted(a) == sorted(b) == list(range(1, 7))
    np.testing.assert_allclose([b[k] for k in a], [a[k] for k in a], rtol=1e-5)
    np.testing.assert_allclose(single.history[-1]["mlm_accuracy"], two.history[-1]["mlm_accuracy"])


def test_jit_update_gives_the_same_training_as_tf_kernels(tmp_path, plain_run):
    """jit_compile=False with the AdamW update XLA-compiled (jit_update) or not: same losses."""
    fused = make_trainer(tmp_path / "xla_update", jit_update=True, steps=6, steps_per_loop=2,
                         save_every=0, jit_compile=False)
    plain, plain_result, _ = plain_run
    a, b = losses(fused.train()), losses(plain_result)
    assert sorted(a) == list(range(1, 7))
    np.testing.assert_allclose([a[k] for k in a], [b[k] for k in a], rtol=1e-5)
    for v, w in zip(fused.variables, plain.variables):
        np.testing.assert_allclose(v.numpy(), w.numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kind", ["default", pytest.param("mirrored", marks=pytest.mark.slow)])
def test_resume_matches_uninterrupted_run(tmp_path, kind, mirrored):
    """Stopped at step 3 (its checkpoint, see toy.stopped_at), build everything again, continue to
    6: the losses of steps 4-6 equal the uninterrupted run's (dropout on, so the RNG state must be
    restored too). The default strategy restores the tf.data iterator; MirroredStrategy replays
    the input."""
    def strategy():
        return mirrored if kind == "mirrored" else make_strategy(kind)
    full = make_trainer(tmp_path / "full", strategy(), steps=6).train()
    part = toy.stopped_at(tmp_path / "full", tmp_path / "part", 3)
    resumed = make_trainer(part, strategy(), steps=6).train()
    assert resumed.start_step == 3 and resumed.step == 6
    a, b = losses(full), losses(resumed)
    np.testing.assert_allclose([b[k] for k in (4, 5, 6)], [a[k] for k in (4, 5, 6)], rtol=1e-6)


@pytest.mark.parametrize("kind", ["default", "mirrored"])
def test_async_checkpoints_resume_like_the_uninterrupted_run(tmp_path, kind, mirrored):
    """Checkpoints written in the background (TF's async checkpointing, as on TPU by default),
    one per step while training goes on, the run stopped at step 3 (toy.stopped_at) and resumed to
    6: losses of steps 4-6 equal the uninterrupted run's (weights, optimizer, dropout RNG state
    and, on the default strategy, the tf.data iterator state all come back from the async write)."""
    def strategy():
        return mirrored if kind == "mirrored" else make_strategy(kind)
    fast = dict(jit_compile=False, jit_update=False, async_checkpoint=True)
    t = make_trainer(tmp_path / "full", strategy(), steps=6, save_every=1, **fast)
    full = t.train()
    assert full.checkpoint.endswith("ckpt-6")
    assert t._prepared.checkpoint.checkpoint._async_checkpointer_impl is not None
    assert sorted(f for f in os.listdir(tmp_path / "full" / "checkpoints")
                  if f.endswith(".index")) == [f"ckpt-{s}.index" for s in range(2, 7)]  # keep 5
    part = toy.stopped_at(tmp_path / "full", tmp_path / "part", 3)
    resumed = make_trainer(part, strategy(), steps=6, **fast).train()
    assert resumed.start_step == 3 and resumed.step == 6 and resumed.checkpoint.endswith("ckpt-6")
    a, b = losses(full), losses(resumed)
    np.testing.assert_allclose([b[k] for k in (4, 5, 6)], [a[k] for k in (4, 5, 6)], rtol=1e-6)


def test_async_checkpoint_is_on_by_default_only_for_tpu(tmp_path):
    t = make_trainer(tmp_path, steps=2)
    assert not t._async_checkpoint()
    t.info = dataclasses.replace(t.info, kind="tpu")
    assert t._async_checkpoint()
    t.config = dataclasses.replace(t.config, async_checkpoint=False)
    assert not t._async_checkpoint()


@pytest.mark.parametrize("jit_compile", [True, False])  # False: the fused XLA update's own check
def test_nonfinite_stop_keeps_last_good_checkpoint(tmp_path, jit_compile):
    data = toy.examples(nan_rows=[4 * BATCH + 1])  # the 5th batch has a NaN weight
    t = make_trainer(tmp_path, steps=8, data=data, steps_per_loop=1, save_every=3,
                     jit_compile=jit_compile)
    with pytest.raises(NonFiniteLossError, match=r"before step 5.*ckpt-3"):
        t.train()
    assert all(np.isfinite(v.numpy()).all() for v in t.variables)  # the bad update was skipped
    assert int(t.optimizer.iterations.numpy()) == 4
    assert sorted(f for f in os.listdir(tmp_path / "checkpoints") if f.endswith(".index")) == \
        ["ckpt-3.index"]


@pytest.mark.parametrize("jit_compile", [True, False])
def test_nonfinite_skip_counts_and_continues(tmp_path, jit_compile):
    data = toy.examples(nan_rows=[4 * BATCH + 1])
    result = make_trainer(tmp_path, steps=8, data=data, steps_per_loop=4, log_every=4,
                          nonfinite="skip", jit_compile=jit_compile).train()
    assert result.step == 8 and result.nonfinite_steps == 1
    assert all(np.isfinite(r["loss"]) for r in result.history)
    assert result.history[-1]["nonfinite_steps"] == 1


def test_nonfinite_skip_gives_up_after_max(tmp_path):
    """The count is the host's (engine/actions.py); the step's skip under XLA and without it is
    test_nonfinite_skip_counts_and_continues's, so this one runs the step uncompiled."""
    data = toy.examples(nan_rows=range(0, 64, 8))  # every batch
    with pytest.raises(NonFiniteLossError, match="max_nonfinite=2"):
        make_trainer(tmp_path, steps=8, data=data, steps_per_loop=1, nonfinite="skip",
                     max_nonfinite=2, jit_compile=False, jit_update=False).train()


def test_stop_request_saves_and_returns(tmp_path):
    """A host-side stop (checked between host calls): the step itself runs uncompiled here."""
    fast = dict(steps=10, steps_per_loop=2, log_every=2, save_every=0, jit_compile=False,
                jit_update=False)
    t = make_trainer(tmp_path, **fast)
    t.request_stop()  # what the SIGTERM handler does
    result = t.train()
    assert result.preempted and result.step == 2 and result.checkpoint.endswith("ckpt-2")
    again = make_trainer(tmp_path, **fast).train()
    assert again.start_step == 2 and again.step == 10 and not again.preempted


# [default]: the same replica step as [cpu]'s under XLA; default-strategy XLA in float32 is
# test_loss_falls_and_outputs_are_written's.
@pytest.mark.parametrize("kind", [pytest.param("default", marks=pytest.mark.slow), "cpu"])
def test_xla_mixed_bfloat16_toy_step(tmp_path, kind):
    """The whole replica step (including the guarded AdamW update) under jit_compile=True."""
    try:
        set_precision("mixed_bfloat16")
        t = make_trainer(tmp_path, make_strategy(kind), steps=2, jit_compile=True)
        result = t.train()
    finally:
        set_precision("float32")
    assert all(v.dtype == "float32" for v in t.variables)
    assert t.objective.model.funnel.layer_0.compute_dtype == "bfloat16"
    assert np.isfinite(result.history[-1]["loss"])


def test_bad_config_values(mirrored):
    with pytest.raises(ValueError, match="nonfinite"):
        LoopConfig(1, 8, 8, "/tmp/x", nonfinite="ignore").validate()
    with pytest.raises(ValueError, match="not divisible"):
        Trainer(mirrored, toy.ToyObjective(),
                lambda vs: make_optimizer(vs, 1e-3), toy.dataset_fn(3),
                LoopConfig(train_steps=1, global_batch_size=3, seq_len=toy.L, model_dir="/tmp/x"))


# ------------------------------------------------------------------------------ real Funnel
def _funnel_trainer(tmp_path, objective_name, strategy, steps=2, dropout=0.1, blocks=2, **kw):
    from funnel_tf.config import load_config
    from funnel_tf.tasks.pretraining import pretraining_task
    keras.utils.set_random_seed(1)
    cfg = load_config("tiny").replace(vocab_size=64, block_sizes=[1] * blocks,
                                      block_repeats=[1] * blocks,
                                      num_decoder_layers=1, hidden_dropout=dropout,
                                      attention_dropout=dropout)
    data = toy.funnel_features()

    def fn(ctx):
        return tf.data.Dataset.from_tensor_slices(data).repeat().batch(
            ctx.get_per_replica_batch_size(8), drop_remainder=True)
    kw.setdefault("steps_per_loop", steps)
    kw.setdefault("log_every", 1)
    kw.setdefault("save_every", 0)
    return Trainer(strategy, pretraining_task(objective_name, cfg),
                   lambda vs: make_optimizer(vs, 1e-3), fn,
                   LoopConfig(train_steps=steps, global_batch_size=8, seq_len=16,
                              model_dir=str(tmp_path), **kw))


@pytest.mark.parametrize("objective", ["mlm", pytest.param("electra", marks=pytest.mark.slow)])
def test_weight_copies_train_exactly_like_casts_and_resume(tmp_path, objective, monkeypatch):
    """mixed_bfloat16 on TF's kernels (fused update): the forward reading bf16 weight copies gives
    the same losses and weights as casting every step (MLM: the tied embedding table is read both
    ways), and a run resumed from a checkpoint refreshes the copies and continues identically.
    The run with copies resumes the casting run from its step-2 checkpoint (toy.stopped_at): its
    steps 3-4 losses and final weights equal the casting run's (two trainers: a trainer's trace
    and its compiled update are the cost here). A copy left stale by the restore or by an update
    would change step 3's or step 4's loss. One block: pooling reads no weight, it only adds
    tracing."""
    import funnel_tf.engine.weight_copies as wc
    monkeypatch.setattr(wc, "MIN_SIZE", 1 << 10)  # the tiny model's matrices get copies
    common = dict(steps=4, steps_per_loop=1, jit_compile=False, blocks=1)
    try:
        set_precision("mixed_bfloat16")
        casts = _funnel_trainer(tmp_path / "casts", objective, make_strategy("default"),
                                weight_copies=False, save_every=2, **common)
        assert casts._fused.weight_copies is None
        b = casts.train()
        part = toy.stopped_at(tmp_path / "casts", tmp_path / "copies", 2)
        resumed = _funnel_trainer(part, objective, make_strategy("default"), **common)
        assert resumed._fused.weight_copies is not None
        c = resumed.train()
    finally:
        set_precision("float32")
    copies = resumed._fused.weight_copies
    # MLM reads every copy; ELECTRA's head Dense layers read their kernels through Keras' autocast
    assert len(copies.read_ids) == len(copies) if objective == "mlm" else copies.read_ids
    assert c.start_step == 2 and c.step == 4
    assert sorted(losses(b)) == [1, 2, 3, 4] and sorted(losses(c)) == [3, 4]
    np.testing.assert_allclose([losses(c)[k] for k in (3, 4)], [losses(b)[k] for k in (3, 4)],
                               rtol=1e-6)
    for v, w in zip(resumed.variables, casts.variables):
        # ELECTRA's shared table sums its gradient parts in another order: round-off only
        np.testing.assert_allclose(v.numpy(), w.numpy(), rtol=1e-5, atol=1e-8, err_msg=v.path)


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["mlm", "electra"])
def test_funnel_step_compiles_with_xla_under_mixed_bfloat16(tmp_path, objective):
    try:
        set_precision("mixed_bfloat16")
        t = _funnel_trainer(tmp_path, objective, make_strategy("default"), jit_compile=True)
        result = t.train()
    finally:
        set_precision("float32")
    assert result.step == 2 and np.isfinite(result.history[-1]["loss"])
    assert all(v.dtype == "float32" for v in t.variables)


@pytest.mark.slow
def test_funnel_mirrored_matches_single_device(tmp_path, mirrored):
    """The real tiny Funnel MLM: 2 replicas vs 1 device, 4 steps, losses within rtol 1e-5."""
    one = _funnel_trainer(tmp_path / "a", "mlm", make_strategy("default"), steps=4, dropout=0.0,
                          steps_per_loop=1).train()
    two = _funnel_trainer(tmp_path / "b", "mlm", mirrored, steps=4, dropout=0.0,
                          steps_per_loop=1).train()
    a, b = losses(one), losses(two)
    np.testing.assert_allclose([b[k] for k in sorted(a)], [a[k] for k in sorted(a)], rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["default", "mirrored"])
def test_sigkill_then_restart_reaches_the_uninterrupted_loss(tmp_path, kind):
    """A process killed with SIGKILL after its step-10 checkpoint and restarted from the same
    model_dir logs exactly (rtol 1e-6) the losses of an uninterrupted run for steps 11..24
    (real tiny Funnel, dropout on; default strategy restores the tf.data iterator, mirrored
    replays the input)."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=repo)

    def command(d):
        return [sys.executable, "-m", "tests.engine.resume_driver", str(d), "24", "5", kind]

    subprocess.run(command(tmp_path / "full"), cwd=repo, env=env, check=True,
                   capture_output=True, timeout=900)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(command(killed), cwd=repo, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 900
    while not (killed / "checkpoints" / "ckpt-10.index").exists():
        assert proc.poll() is None and time.time() < deadline, "run ended before the kill"
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert max(r["step"] for r in read_metrics(str(killed))) < 24
    subprocess.run(command(killed), cwd=repo, env=env, check=True, capture_output=True,
                   timeout=900)
    full = {r["step"]: r["loss"] for r in read_metrics(str(tmp_path / "full"))}
    resumed = {r["step"]: r["loss"] for r in read_metrics(str(killed))}  # last record wins
    assert sorted(resumed) == list(range(1, 25))
    np.testing.assert_allclose([resumed[s] for s in range(11, 25)],
                               [full[s] for s in range(11, 25)], rtol=1e-6)


@pytest.mark.slow
def test_multi_worker_strategy_with_preemption_handler_trains_and_resumes(tmp_path):
    """MultiWorkerMirroredStrategy (one worker, no TF_CONFIG) goes through TF's
    PreemptionCheckpointHandler path; a second process resumes from the first one's checkpoint."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env["PYTHONPATH"] = repo
    for steps in ("6", "10"):
        subprocess.run([sys.executable, "-m", "tests.engine.resume_driver", str(tmp_path),
                        steps, "3", "multi_worker"], cwd=repo, env=env, check=True,
                       capture_output=True, timeout=900)
    steps = [r["step"] for r in read_metrics(str(tmp_path))]
    assert steps == list(range(1, 11))  # the second run started at 6, not 0
    assert (tmp_path / "checkpoints" / "ckpt-10.index").exists()


class _SignalAt(Trainer):
    """Sends itself `count` SIGINTs when the host loop reaches `at` (a host-call boundary)."""

    def __init__(self, *args, at=2, count=1, **kw):
        super().__init__(*args, **kw)
        self._at, self._count = at, count

    def _chunk(self, step):
        if step == self._at:
            for _ in range(self._count):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)  # let the handler run between the signals
        return super()._chunk(step)


def _signal_trainer(tmp_path, **kw):
    t = make_trainer(tmp_path, steps=10, steps_per_loop=1, log_every=1, save_every=0,
                     jit_compile=False, jit_update=False)
    return _SignalAt(t.strategy, t.objective, t.optimizer_fn, t.dataset_fn, t.config, **kw)


def test_ctrl_c_saves_and_stops_like_a_preemption(tmp_path):
    before = signal.getsignal(signal.SIGINT)
    result = _signal_trainer(tmp_path, at=2).train()
    assert result.preempted and result.step == 3 and result.checkpoint.endswith("ckpt-3")
    assert signal.getsignal(signal.SIGINT) is before
    again = make_trainer(tmp_path, steps=5, steps_per_loop=2, log_every=2, save_every=0,
                         jit_compile=False, jit_update=False).train()
    assert again.start_step == 3 and again.step == 5


def test_second_ctrl_c_aborts_at_once_without_saving(tmp_path):
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        _signal_trainer(tmp_path, at=2, count=2).train()
    assert signal.getsignal(signal.SIGINT) is before
    ckpt_dir = tmp_path / "checkpoints"
    assert not (ckpt_dir.exists() and [f for f in os.listdir(ckpt_dir) if f.startswith("ckpt-")])


def test_resume_past_a_truncated_newest_checkpoint(tmp_path, plain_run):
    model_dir = tmp_path / "run"
    shutil.copytree(plain_run[2], model_dir)  # checkpoints at 3 and 6
    data = tf.io.gfile.glob(str(model_dir / "checkpoints" / "ckpt-6.data-*"))[0]
    with open(data, "r+b") as f:
        f.truncate(os.path.getsize(data) // 2)
    result = make_trainer(model_dir, steps=9, jit_compile=False, jit_update=False).train()
    assert result.start_step == 3 and result.step == 9 and result.checkpoint.endswith("ckpt-9")


def test_prepare_writes_nothing_and_train_continues_from_it(tmp_path):
    t = make_trainer(tmp_path / "run", steps=2, jit_compile=False, jit_update=False)
    assert t.prepare() is None and not (tmp_path / "run").exists()
    assert t.train().step == 2
    again = make_trainer(tmp_path / "run", steps=4, jit_compile=False, jit_update=False)
    assert again.prepare().endswith("ckpt-2") and again.prepare().endswith("ckpt-2")
    assert again.train().start_step == 2


def test_data_loss_detail_keeps_the_informative_line():
    from funnel_tf.engine.loop import data_loss_detail

    error = tf.errors.DataLossError(None, None, (
        "Graph execution error:\n\nDetected at node while/IteratorGetNext defined at:\n"
        "  File \"x.py\", line 1\n\n{{function_node __wrapped__IteratorGetNext}} truncated "
        "record at 1809 [Op:IteratorGetNext] name:\n\t [[{{node while/IteratorGetNext}}]]"))
    assert data_loss_detail(error) == "truncated record at 1809"
    assert data_loss_detail(tf.errors.DataLossError(None, None, "")) == "DataLossError"


class _LoseLockAt(Trainer):
    """At the host-call boundary `at`, deletes model_dir's RUN_LOCK or puts another run's there."""

    def __init__(self, *args, at=2, how="deleted", **kw):
        super().__init__(*args, **kw)
        self._at, self._how = at, how

    def _chunk(self, step):
        if step == self._at:
            path = os.path.join(self.config.model_dir, "RUN_LOCK")
            os.remove(path)
            if self._how == "replaced":
                with open(path, "w") as f:
                    f.write('{"pid": 4242, "host": "other-host", "token": "theirs"}')
        return super()._chunk(step)


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_run_that_lost_its_lock_stops_before_the_next_save(tmp_path, how):
    """RUN_LOCK deleted (or replaced by another run's) under a live run: the next save refuses
    with a one-line RunLockLostError naming the other holder, and writes no checkpoint."""
    from funnel_tf.errors import one_line
    from funnel_tf.engine.run_lock import ModelDirLock, RunLockLostError

    t = make_trainer(tmp_path, steps=6, steps_per_loop=1, save_every=2, jit_compile=False,
                     jit_update=False)
    t = _LoseLockAt(t.strategy, t.objective, t.optimizer_fn, t.dataset_fn, t.config, at=3,
                    how=how)
    with ModelDirLock(str(tmp_path)):
        with pytest.raises(RunLockLostError) as e:
            t.train()
    msg = one_line(e.value)
    assert msg == str(e.value) and "RUN_LOCK" in msg
    assert ("PID 4242 on host other-host" if how == "replaced" else "was removed") in msg
    ckpts = sorted(f for f in os.listdir(tmp_path / "checkpoints") if f.startswith("ckpt-"))
    assert ckpts == ["ckpt-2.data-00000-of-00001", "ckpt-2.index"]
    assert "ckpt-2" in open(tmp_path / "checkpoints" / "checkpoint").readline()
