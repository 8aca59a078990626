"""The JAX engine's Orbax checkpoints (funnel_tf/engine/jax/checkpoints.py): an exact round trip,
async saves complete once waited for (also across a hard exit), an unreadable, corrupt or partial
newest checkpoint skipped, max_to_keep, another run's variables and the old .npz format refused."""

import logging
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("jax")
pytest.importorskip("orbax.checkpoint")

from funnel_tf.checkpoints.errors import CheckpointMismatchError  # noqa: E402
from funnel_tf.engine.jax.checkpoints import (  # noqa: E402
    JaxCheckpoints, OldCheckpointFormatError, checkpoint_dir, list_checkpoints)
from funnel_tf.errors import UserError  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def _groups(seed):
    """A run's state as the trainer hands it over: float32 weights (one of 128 KB: tensorstore
    keeps it out of its checksummed index), a bfloat16 one, an empty group, the optimizer's int64
    iteration (0-d) and moments; values differ by `seed`."""
    import ml_dtypes

    rng = np.random.default_rng(seed)
    return {"trainable": [("embeddings/word", rng.standard_normal((128, 256), np.float32)),
                          ("encoder/dense/kernel", rng.standard_normal((8, 16), np.float32)),
                          ("encoder/dense/bias", rng.standard_normal(16).astype(np.float32)),
                          ("head/bf16", rng.standard_normal((4, 4)).astype(ml_dtypes.bfloat16))],
            "non_trainable": [],
            "optimizer": [("iteration", np.asarray(seed, np.int64)),
                          ("adam/m", rng.standard_normal((8, 16), np.float32))]}


def _expected(groups):
    return {g: [(p, tuple(np.shape(a))) for p, a in items] for g, items in groups.items()}


def _assert_same(restored, groups):
    assert sorted(restored) == sorted(groups)
    for g, items in groups.items():
        assert len(restored[g]) == len(items), g
        for got, (path, want) in zip(restored[g], items):
            assert got.dtype == want.dtype and got.shape == want.shape, path
            np.testing.assert_array_equal(got, want, err_msg=path)


def _steps(model_dir):
    return [s for s, _ in list_checkpoints(str(model_dir))]


def test_round_trip_is_exact(tmp_path):
    """Every array comes back bit for bit with its dtype and shape (bfloat16, 0-d int64, an empty
    group), with the step and the non-finite count; the checkpoint is an Orbax step folder."""
    groups = _groups(3)
    ckpt = JaxCheckpoints(str(tmp_path), keep=5)
    path = ckpt.save(12, 2, groups)
    ckpt.wait()
    assert path == os.path.join(checkpoint_dir(str(tmp_path)), "jax_12") and os.path.isdir(path)
    assert ckpt.latest == path and ckpt.saved_step == 12
    fresh = JaxCheckpoints(str(tmp_path))
    step, nonfinite, restored = fresh.restore_latest(_expected(groups))
    assert (step, nonfinite, fresh.latest, fresh.saved_step) == (12, 2, path, 12)
    _assert_same(restored, groups)


def test_nothing_to_restore_and_a_process_that_does_not_write(tmp_path):
    """An empty model_dir restores None; a non-chief in a one-process run writes nothing."""
    assert JaxCheckpoints(str(tmp_path)).restore_latest(_expected(_groups(0))) is None
    assert JaxCheckpoints(str(tmp_path), write=False).save(4, 0, _groups(0)) is None
    assert list(tmp_path.iterdir()) == []


def test_async_saves_are_complete_once_waited_for(tmp_path):
    """save() starts an async save and returns; the next save finishes it first; wait() finishes
    the last: both are then listed, finalized (no temporary folder) and restore exactly."""
    ckpt = JaxCheckpoints(str(tmp_path), keep=5)
    ckpt.save(4, 0, _groups(4))
    ckpt.save(8, 1, _groups(8))
    ckpt.wait()
    assert _steps(tmp_path) == [8, 4]
    assert not [p for p in os.listdir(checkpoint_dir(str(tmp_path))) if "tmp" in p]
    step, nonfinite, restored = JaxCheckpoints(str(tmp_path)).restore_latest(
        _expected(_groups(8)))
    assert (step, nonfinite) == (8, 1)
    _assert_same(restored, _groups(8))


@pytest.mark.slow  # a second interpreter importing TensorFlow and JAX: 10-20 s on a loaded machine
def test_async_save_is_complete_after_wait_even_on_a_hard_exit(tmp_path):
    """A process that saves (async), waits, then leaves at once with os._exit (as after SIGTERM's
    save, exit 75) leaves a complete checkpoint that restores exactly; an earlier save in flight
    is finished before the next one starts."""
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {ROOT!r}); sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_checkpoints import _groups
        from funnel_tf.engine.jax.checkpoints import JaxCheckpoints
        ckpt = JaxCheckpoints({str(tmp_path)!r}, keep=5)
        ckpt.save(4, 0, _groups(4))
        ckpt.save(8, 1, _groups(8))  # waits for step 4's save first
        ckpt.wait()
        os._exit(75)
    """)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 75, proc.stderr[-3000:]
    assert _steps(tmp_path) == [8, 4]
    assert not [p for p in os.listdir(checkpoint_dir(str(tmp_path))) if "tmp" in p]
    step, nonfinite, restored = JaxCheckpoints(str(tmp_path)).restore_latest(
        _expected(_groups(8)))
    assert (step, nonfinite) == (8, 1)
    _assert_same(restored, _groups(8))


def _flip_a_data_byte(step_dir):
    """Flip one byte in the middle of each data file of the step's arrays (state/**/d/*: the
    values, stored raw or zstd-compressed; tensorstore checks its b-tree, not them)."""
    files = [os.path.join(root, f) for root, _, names in os.walk(os.path.join(step_dir, "state"))
             for f in names if os.path.basename(root) == "d"]
    biggest = max(os.path.getsize(f) for f in files)
    for target in [f for f in files if os.path.getsize(f) == biggest]:  # the [128, 256] weight
        with open(target, "r+b") as f:
            f.seek(biggest // 2)
            byte = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([byte[0] ^ 0x10]))


def test_unreadable_corrupt_or_partial_newest_is_skipped(tmp_path, caplog):
    """Newest first: a partial folder (killed mid-write) is not a checkpoint, a flipped byte in
    the values (step 6) and a missing meta item (step 4) are skipped with a warning each, and
    step 2 is restored exactly; the next save at step 4 replaces the skipped ones."""
    ckpt = JaxCheckpoints(str(tmp_path), keep=5)
    for step in (2, 4, 6):
        ckpt.save(step, 0, _groups(step))
    ckpt.wait()
    folder = checkpoint_dir(str(tmp_path))
    _flip_a_data_byte(os.path.join(folder, "jax_6"))
    for root, _, names in os.walk(os.path.join(folder, "jax_4", "meta")):
        for name in names:
            os.remove(os.path.join(root, name))
    os.makedirs(os.path.join(folder, "jax_8.orbax-checkpoint-tmp-1700000000"))
    assert _steps(tmp_path) == [6, 4, 2]

    caplog.set_level(logging.WARNING)
    fresh = JaxCheckpoints(str(tmp_path), keep=5)
    step, _, restored = fresh.restore_latest(_expected(_groups(2)))
    assert step == 2 and fresh.latest.endswith("jax_2")
    _assert_same(restored, _groups(2))
    warned = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(warned) == 2 and "jax_6" in warned[0] and "jax_4" in warned[1], warned
    assert "differ from the ones saved" in warned[0]

    fresh.save(4, 0, _groups(40), wait=True)
    assert _steps(tmp_path) == [4, 2]
    step, _, restored = JaxCheckpoints(str(tmp_path)).restore_latest(_expected(_groups(2)))
    assert step == 4
    _assert_same(restored, _groups(40))


def test_keeps_the_newest_max_to_keep(tmp_path):
    ckpt = JaxCheckpoints(str(tmp_path), keep=2)
    for step in (1, 2, 3, 4, 5):
        ckpt.save(step, 0, _groups(step))
    ckpt.wait()
    assert _steps(tmp_path) == [5, 4]
    assert sorted(os.listdir(checkpoint_dir(str(tmp_path)))) == ["jax_4", "jax_5"]


def test_other_variables_are_refused_in_one_line(tmp_path):
    """A checkpoint of another model (a variable more, another shape) is a
    CheckpointMismatchError naming it, not a fallback to an older one or a partial load."""
    groups = _groups(1)
    JaxCheckpoints(str(tmp_path)).save(3, 0, groups, wait=True)
    expected = _expected(groups)
    expected["trainable"][1] = ("encoder/dense/kernel", (8, 32))
    with pytest.raises(CheckpointMismatchError) as e:
        JaxCheckpoints(str(tmp_path)).restore_latest(expected)
    assert isinstance(e.value, UserError) and "\n" not in str(e.value)
    assert "jax_3" in str(e.value) and "encoder/dense/kernel[8, 32]" in str(e.value)


def test_old_npz_checkpoints_are_refused_in_one_line(tmp_path):
    """A model_dir of the older .npz format: one line saying so, from the listing both engines
    call first; nothing written."""
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / "jax-8.npz").write_bytes(b"PK old format")
    (folder / "jax-16.npz").write_bytes(b"PK old format")
    for call in (lambda: list_checkpoints(str(tmp_path)),
                 lambda: JaxCheckpoints(str(tmp_path)).restore_latest({})):
        with pytest.raises(OldCheckpointFormatError) as e:
            call()
        assert isinstance(e.value, UserError) and "\n" not in str(e.value)
        assert "older funnel-tf (jax-16.npz" in str(e.value) and "new --model_dir" in str(e.value)
    assert sorted(p.name for p in folder.iterdir()) == ["jax-16.npz", "jax-8.npz"]


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # two interpreters joined by jax.distributed: ~35 s on a loaded machine
def test_two_processes_save_together_and_the_chief_alone_writes(tmp_path):
    """A jax.distributed job of 2 processes on localhost: both call save (Orbax's save is
    collective; the non-chief has write=False), both restore the same step exactly, and the
    files are written by process 0 only (no ocdbt.process_1 folder)."""
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {ROOT!r}); sys.path.insert(0, {os.path.dirname(__file__)!r})
        from funnel_tf.engine.jax import distributed
        distributed.initialize_from_env()
        import jax
        from test_checkpoints import _expected, _groups
        from funnel_tf.engine.jax.checkpoints import JaxCheckpoints
        ckpt = JaxCheckpoints({str(tmp_path)!r}, keep=5, write=jax.process_index() == 0)
        ckpt.save(4, 0, _groups(4))
        ckpt.save(8, 1, _groups(8))
        ckpt.wait()
        step, nonfinite, restored = JaxCheckpoints({str(tmp_path)!r}).restore_latest(
            _expected(_groups(8)))
        assert (step, nonfinite) == (8, 1), (step, nonfinite)
        want = _groups(8)
        assert all((a == b).all() for g in want for a, (_, b) in zip(restored[g], want[g]))
        distributed.barrier("test_checkpoints.done")
    """)
    port, procs = _free_port(), []
    for i in range(2):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", JAX_PLATFORMS="cpu",
                   JAX_COORDINATOR_ADDRESS=f"localhost:{port}", JAX_NUM_PROCESSES="2",
                   JAX_PROCESS_ID=str(i))
        procs.append(subprocess.Popen([sys.executable, "-c", script], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(e[-2000:] for e in errs)
    assert _steps(tmp_path) == [8, 4]
    written = [os.path.relpath(os.path.join(root, d), tmp_path)
               for root, dirs, _ in os.walk(tmp_path) for d in dirs]
    assert [d for d in written if "ocdbt.process_0" in d], written  # Orbax's per-process folders
    assert not [d for d in written if "process_1" in d], written


def test_orbax_info_records_stay_out_of_the_run_log(tmp_path, caplog):
    """Orbax logs some 40 INFO lines a save through absl's logger: none reaches the run's log;
    our own warnings (the fallback's) still do."""
    caplog.set_level(logging.INFO)
    ckpt = JaxCheckpoints(str(tmp_path), keep=5)
    ckpt.save(1, 0, _groups(1), wait=True)
    ckpt.restore_latest(_expected(_groups(1)))
    assert not [r for r in caplog.records
                if "/orbax/" in r.pathname and r.levelno < logging.WARNING]
    os.rename(os.path.join(checkpoint_dir(str(tmp_path)), "jax_1", "meta"),
              os.path.join(str(tmp_path), "meta_moved"))
    assert JaxCheckpoints(str(tmp_path)).restore_latest(_expected(_groups(1))) is None
    assert [r for r in caplog.records if "unreadable" in r.getMessage()]


def test_arrays_changed_after_save_returns_do_not_reach_the_checkpoint(tmp_path):
    """save() returns before Orbax writes: the values are copied first, so buffers reused right
    after (the next step's donated state) leave the checkpoint as it was at save()."""
    groups = _groups(5)
    want = {g: [(p, a.copy()) for p, a in items] for g, items in groups.items()}
    ckpt = JaxCheckpoints(str(tmp_path))
    ckpt.save(5, 0, groups)
    for items in groups.values():
        for _, a in items:
            a[...] = 0
    ckpt.wait()
    step, _, restored = JaxCheckpoints(str(tmp_path)).restore_latest(_expected(want))
    assert step == 5
    _assert_same(restored, want)
