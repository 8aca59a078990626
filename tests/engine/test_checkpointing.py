"""Training checkpoints (every variable, optimizer slots, step, data position, fallbacks) and
warm starts (training checkpoints and Keras *.weights.h5), with loud failures."""

import errno
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.checkpoint import checkpoint_management

from funnel_tf.config import load_config
from funnel_tf.errors import UserError, one_line
from funnel_tf.modeling.heads import FunnelForMaskedLM, FunnelForPreTraining
from funnel_tf.checkpoints.errors import (
    CheckpointError, CheckpointMismatchError, CheckpointReadError, CheckpointWriteError)
from funnel_tf.checkpoints.training import model_weights, resolve_checkpoint, warm_start, weights_file
from funnel_tf.engine.checkpointing import TrainingCheckpoint, read_step
from funnel_tf.engine.optimization import make_optimizer

from . import toy


def tiny(**kw):
    base = dict(vocab_size=64, block_sizes=[1, 1], block_repeats=[1, 1], num_decoder_layers=1)
    return load_config("tiny").replace(**{**base, **kw})


def _perturb(variables, seed):
    r = np.random.RandomState(seed)
    for v in variables:
        v.assign(r.normal(size=v.shape).astype(np.float32))


def test_model_weights_cover_every_trainable_variable_of_the_funnel():
    m = FunnelForMaskedLM(tiny())
    table = model_weights(m)
    assert len(table) == len(m.trainable_variables)
    assert any("encoder/layer_1/" in p for p in table) and any("decoder/layer_2/" in p for p in table)


def test_model_weights_suffix_repeated_paths():
    a = keras.Variable(1.0, name="w")
    b = keras.Variable(2.0, name="w")

    class Two(keras.Model):
        def __init__(self):
            super().__init__()
            self.a, self.b = a, b
    assert list(model_weights(Two())) == ["w", "w#2"]


def test_save_restore_everything_exactly(tmp_path):
    """Model weights (including layers that attribute tracking misses), dropout seed state,
    optimizer slots + iteration count, step and the tf.data iterator all round-trip."""
    m = FunnelForMaskedLM(tiny(), name="masked_lm")
    opt = make_optimizer(m.trainable_variables, 1e-3)
    opt.apply([tf.ones_like(v) * 0.01 for v in m.trainable_variables], m.trainable_variables)
    step = tf.Variable(7, dtype=tf.int64)
    it = iter(tf.data.Dataset.range(100).shuffle(10, seed=1))
    next(it), next(it)
    ck = TrainingCheckpoint(str(tmp_path), {"model": m, "optimizer": opt}, step, data_iterator=it)
    path = ck.save()
    assert path.endswith("ckpt-7") and ck.saves_data and read_step(str(tmp_path)) == 7
    saved = [v.numpy().copy() for v in m.variables + opt.variables]
    expected_next = [int(next(it)) for _ in range(3)]

    _perturb(m.trainable_variables + opt.variables[1:], 0)
    step.assign(0)
    it2 = iter(tf.data.Dataset.range(100).shuffle(10, seed=1))
    ck2 = TrainingCheckpoint(str(tmp_path), {"model": m, "optimizer": opt}, step, data_iterator=it2)
    assert ck2.restore_latest() == path
    assert int(step.numpy()) == 7
    for a, b in zip(saved, [v.numpy() for v in m.variables + opt.variables]):
        np.testing.assert_array_equal(a, b)
    assert [int(next(it2)) for _ in range(3)] == expected_next


def test_unsaveable_pipeline_falls_back_to_no_data_state(tmp_path):
    m = toy.ToyMLM()
    step = tf.Variable(3, dtype=tf.int64)
    gen = tf.data.Dataset.from_generator(lambda: iter(range(10)),
                                         output_signature=tf.TensorSpec([], tf.int64))
    it = iter(gen)
    next(it)
    ck = TrainingCheckpoint(str(tmp_path), {"model": m}, step, data_iterator=it)
    assert ck.saves_data
    ck.save()  # PyFunc state cannot be serialised: saved without it, with a warning
    assert not ck.saves_data
    keys = tf.train.load_checkpoint(ck.latest).get_variable_to_shape_map()
    assert not any(k.startswith("data/") for k in keys)
    # A fresh checkpoint object with an iterator restores it anyway, minus the data position.
    ck2 = TrainingCheckpoint(str(tmp_path), {"model": m}, step,
                             data_iterator=iter(tf.data.Dataset.range(3)))
    ck2.restore_latest()
    assert not ck2.saves_data


def test_restore_into_a_different_model_is_a_clear_error(tmp_path):
    step = tf.Variable(1, dtype=tf.int64)
    TrainingCheckpoint(str(tmp_path), {"model": FunnelForMaskedLM(tiny())}, step).save()
    other = FunnelForMaskedLM(tiny(block_sizes=[1, 1, 1], block_repeats=[1, 1, 1]))
    with pytest.raises(CheckpointMismatchError, match="another (objective or )?model config"):
        TrainingCheckpoint(str(tmp_path), {"model": other}, step).restore_latest()


def test_keep_only_the_newest(tmp_path):
    step = tf.Variable(0, dtype=tf.int64)
    ck = TrainingCheckpoint(str(tmp_path), {"model": toy.ToyMLM()}, step, keep=2)
    for s in (1, 2, 3):
        step.assign(s)
        ck.save()
    idx = sorted(f for f in os.listdir(tmp_path / "checkpoints") if f.endswith(".index"))
    assert idx == ["ckpt-2.index", "ckpt-3.index"]


def test_warm_start_electra_discriminator_from_an_mlm_training_checkpoint(tmp_path):
    mlm = FunnelForMaskedLM(tiny(), name="masked_lm")
    _perturb(mlm.trainable_variables, 1)
    TrainingCheckpoint(str(tmp_path), {"model": mlm}, tf.Variable(5, dtype=tf.int64)).save()
    disc = FunnelForPreTraining(tiny(), name="discriminator")
    msg = warm_start(disc.funnel, str(tmp_path))
    assert "[model]" in msg
    for a, b in zip(mlm.funnel.trainable_variables, disc.funnel.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_warm_start_from_a_checkpoint_that_also_holds_the_optimizer(tmp_path):
    """What pretrain.py writes (model + optimizer + step): the backbone still warm-starts, although
    the variables are stored once, under the optimizer's path rather than the model table's."""
    mlm = FunnelForMaskedLM(tiny(), name="masked_lm")
    _perturb(mlm.trainable_variables, 2)
    opt = make_optimizer(mlm.trainable_variables, 1e-3)
    opt.apply([tf.ones_like(v) * 0.01 for v in mlm.trainable_variables], mlm.trainable_variables)
    TrainingCheckpoint(str(tmp_path), {"model": mlm, "optimizer": opt}, tf.Variable(9, dtype=tf.int64)).save()
    fresh = FunnelForMaskedLM(tiny(), name="masked_lm")
    msg = warm_start(fresh.funnel, str(tmp_path))
    assert "[model]" in msg
    for a, b in zip(mlm.funnel.trainable_variables, fresh.funnel.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_warm_start_from_weights_h5(tmp_path):
    src = toy.ToyMLM()
    _perturb(src.trainable_variables, 2)
    src.funnel.save_weights(str(tmp_path / "backbone.weights.h5"))
    dst = toy.ToyMLM()
    assert "backbone" in warm_start(dst.funnel, str(tmp_path))  # directory with one .weights.h5
    for a, b in zip(src.funnel.trainable_variables, dst.funnel.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # A full head model's weights file loads through the head model.
    src.save_weights(str(tmp_path / "full.weights.h5"))
    dst2 = toy.ToyMLM()
    assert warm_start(dst2.funnel, str(tmp_path / "full.weights.h5"),
                      {"model": dst2}).startswith("model")
    for a, b in zip(src.trainable_variables, dst2.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_weights_file_finds_the_one_file_or_refuses_to_guess(tmp_path):
    """The one rule both --init_checkpoint routes use to find a Keras weights file."""
    assert weights_file(str(tmp_path)) is None                       # empty folder
    assert weights_file(str(tmp_path / "absent.weights.h5")) is None  # no such file
    (tmp_path / "a.weights.h5").write_bytes(b"x")
    assert weights_file(str(tmp_path)) == str(tmp_path / "a.weights.h5")
    assert weights_file(str(tmp_path / "a.weights.h5")) == str(tmp_path / "a.weights.h5")
    (tmp_path / "b.weights.h5").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="several"):
        weights_file(str(tmp_path))
    assert weights_file(str(tmp_path / "b.weights.h5")) == str(tmp_path / "b.weights.h5")


def test_funnel_weights_h5_warm_start_is_complete_or_refused(tmp_path):
    """Never a silent partial load: either every backbone tensor arrives or CheckpointError."""
    src = FunnelForMaskedLM(tiny())
    _perturb(src.trainable_variables, 3)
    src.funnel.save_weights(str(tmp_path / "b.weights.h5"))
    dst = FunnelForMaskedLM(tiny())
    try:
        warm_start(dst.funnel, str(tmp_path / "b.weights.h5"))
    except CheckpointError as e:
        assert "partial load" in str(e)
        return
    for a, b in zip(src.funnel.trainable_variables, dst.funnel.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_warm_start_refuses_partial_or_foreign_checkpoints(tmp_path):
    small = FunnelForMaskedLM(tiny())
    TrainingCheckpoint(str(tmp_path / "a"), {"model": small}, tf.Variable(1, dtype=tf.int64)).save()
    bigger = FunnelForMaskedLM(tiny(block_sizes=[1, 2], block_repeats=[1, 1]))
    with pytest.raises(CheckpointError, match="no complete Funnel backbone"):
        warm_start(bigger.funnel, str(tmp_path / "a"))
    with pytest.raises(CheckpointError, match="holds no TF checkpoint"):
        os.makedirs(tmp_path / "empty")
        warm_start(small.funnel, str(tmp_path / "empty"))
    with pytest.raises(CheckpointError, match=r"not a checkpoint"):
        resolve_checkpoint(str(tmp_path / "nope" / "ckpt-1"))
    toy.ToyMLM().save_weights(str(tmp_path / "toy.weights.h5"))
    with pytest.raises(CheckpointError, match="matches neither"):
        warm_start(small.funnel, str(tmp_path / "toy.weights.h5"), {"model": small})


# ------------------------------------------------------------------ bad checkpoints, full disk
def _toy_run(model_dir, steps=(100, 200), keep=5, dim=16, async_save=False):
    """A toy model checkpointed at `steps`; returns (checkpoint, step variable, model)."""
    m = toy.ToyMLM(dim=dim)
    step = tf.Variable(0, dtype=tf.int64)
    ck = TrainingCheckpoint(str(model_dir), {"model": m}, step, keep=keep, async_save=async_save)
    for s in steps:
        step.assign(s)
        ck.save()
    ck.wait()
    return ck, step, m


def _fresh(model_dir, models=None, dim=16):
    step = tf.Variable(0, dtype=tf.int64)
    return TrainingCheckpoint(str(model_dir), models or {"model": toy.ToyMLM(dim=dim)}, step), step


def _truncate(path, keep=0.5):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(int(size * keep))


def _files(model_dir):
    d = os.path.join(str(model_dir), "checkpoints")
    return {f: os.stat(os.path.join(d, f)).st_mtime_ns for f in sorted(os.listdir(d))}


def test_truncated_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
    _toy_run(tmp_path)
    data = tf.io.gfile.glob(str(tmp_path / "checkpoints" / "ckpt-200.data-*"))[0]
    _truncate(data)
    ck, step = _fresh(tmp_path)
    with caplog.at_level("WARNING"):
        assert ck.restore_latest().endswith("ckpt-100")
    assert int(step.numpy()) == 100 and ck.saved_step == 100
    assert "ckpt-200" in caplog.text and "truncated" in caplog.text
    # The manager now continues from ckpt-100; saving step 200 replaces the broken files.
    assert ck.latest.endswith("ckpt-100")
    step.assign(200)
    ck.save()
    ck2, step2 = _fresh(tmp_path)
    assert ck2.restore_latest().endswith("ckpt-200") and int(step2.numpy()) == 200


def test_corrupt_bytes_in_the_newest_checkpoint_fall_back_too(tmp_path):
    _toy_run(tmp_path)
    data = tf.io.gfile.glob(str(tmp_path / "checkpoints" / "ckpt-200.data-*"))[0]
    raw = bytearray(open(data, "rb").read())
    raw[len(raw) // 3] ^= 0xFF  # same size, bad checksum: only the restore itself notices
    open(data, "wb").write(bytes(raw))
    ck, step = _fresh(tmp_path)
    assert ck.restore_latest().endswith("ckpt-100") and int(step.numpy()) == 100


@pytest.mark.parametrize("state_file", ["stale", "missing", "garbage"])
def test_checkpoints_are_found_by_listing_files(tmp_path, state_file):
    """ckpt-200 deleted (the state file still names it), or the state file gone / unparsable:
    resume from ckpt-100, never from step 0."""
    _toy_run(tmp_path)
    d = tmp_path / "checkpoints"
    for f in tf.io.gfile.glob(str(d / "ckpt-200.*")):
        os.remove(f)
    if state_file == "missing":
        os.remove(d / "checkpoint")
    elif state_file == "garbage":
        (d / "checkpoint").write_text("{{{ not a checkpoint state")
    ck, step = _fresh(tmp_path)
    assert ck.restore_latest().endswith("ckpt-100") and int(step.numpy()) == 100
    assert tf.train.latest_checkpoint(str(d)).endswith("ckpt-100")  # state file repaired


def test_no_readable_checkpoint_is_an_error_naming_them_not_a_fresh_start(tmp_path):
    _toy_run(tmp_path)
    d = tmp_path / "checkpoints"
    for f in tf.io.gfile.glob(str(d / "*.data-*")):
        _truncate(f, 0.1)
    before = _files(tmp_path)
    ck, step = _fresh(tmp_path)
    with pytest.raises(CheckpointReadError) as e:
        ck.restore_latest()
    msg = one_line(e.value)
    assert "ckpt-200" in msg and "ckpt-100" in msg and "truncated" in msg and str(d) in msg
    assert _files(tmp_path) == before


def test_state_file_naming_deleted_checkpoints_is_an_error(tmp_path):
    _toy_run(tmp_path)
    for f in tf.io.gfile.glob(str(tmp_path / "checkpoints" / "ckpt-*")):
        os.remove(f)
    ck, _ = _fresh(tmp_path)
    with pytest.raises(CheckpointReadError, match="ckpt-200.*index file is missing"):
        ck.restore_latest()


def test_other_objective_is_refused_before_anything_changes(tmp_path):
    _toy_run(tmp_path)
    before = _files(tmp_path)
    ck, _ = _fresh(tmp_path, models={"generator": toy.ToyMLM(), "discriminator": toy.ToyMLM()})
    with pytest.raises(CheckpointMismatchError) as e:
        ck.restore_latest()
    msg = one_line(e.value)
    assert "another objective" in msg and "generator" in msg and "ckpt-200" in msg
    assert "\n" not in str(e.value)
    assert _files(tmp_path) == before


def test_other_model_config_is_refused_before_anything_changes(tmp_path):
    _toy_run(tmp_path)
    before = _files(tmp_path)
    ck, _ = _fresh(tmp_path, dim=8)  # same variables, other shapes
    with pytest.raises(CheckpointMismatchError, match=r"model config.*shape"):
        ck.restore_latest()
    assert _files(tmp_path) == before


def _leftovers(model_dir):
    return sorted(f for f in os.listdir(os.path.join(str(model_dir), "checkpoints"))
                  if "ckpt-300" in f or "_temp" in f)


@pytest.mark.parametrize("how", ["merge_enospc", "write_oserror"])
def test_full_disk_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch, how):
    ck, step, m = _toy_run(tmp_path)
    saved = [v.numpy().copy() for v in m.variables]
    if how == "merge_enospc":
        # The shards are written to ckpt-300_temp/, then the merge into ckpt-300 fails.
        from tensorflow.python.checkpoint import functional_saver

        def full(*a, **k):
            raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")
        monkeypatch.setattr(functional_saver.gen_io_ops, "merge_v2_checkpoints", full)
    else:
        def full(self, *a, **k):
            raise OSError(errno.ENOSPC, "No space left on device")
        monkeypatch.setattr(tf.train.Checkpoint, "_write", full)
    step.assign(300)
    with pytest.raises(CheckpointWriteError) as e:
        ck.save()
    msg = one_line(e.value)
    assert "ckpt-300" in msg and "no space left on device" in msg and "step 200" in msg
    assert _leftovers(tmp_path) == []
    monkeypatch.undo()
    ck2, step2 = _fresh(tmp_path)
    assert ck2.restore_latest().endswith("ckpt-200")
    # The run can go on saving once there is space again.
    step.assign(300)
    assert ck.save().endswith("ckpt-300")


def test_read_step_and_resolve_of_a_truncated_checkpoint_are_one_line_errors(tmp_path):
    _toy_run(tmp_path, steps=(100,))
    d = tmp_path / "checkpoints"
    _truncate(tf.io.gfile.glob(str(d / "ckpt-100.data-*"))[0], 0.3)
    for fn in (read_step, resolve_checkpoint):
        with pytest.raises(CheckpointReadError, match=r"ckpt-100.*truncated"):
            fn(str(tmp_path))
        with pytest.raises(CheckpointReadError, match=r"ckpt-100.*truncated"):
            fn(str(d / "ckpt-100"))


def test_warm_start_from_truncated_files_names_the_file(tmp_path):
    src = toy.ToyMLM()
    h5 = str(tmp_path / "b.weights.h5")
    src.funnel.save_weights(h5)
    _truncate(h5, 0.6)
    with pytest.raises(UserError, match=r"b\.weights\.h5.*truncated") as e:
        warm_start(toy.ToyMLM().funnel, h5)
    assert "\n" not in str(e.value)
    _toy_run(tmp_path / "run", steps=(100,))
    data = tf.io.gfile.glob(str(tmp_path / "run" / "checkpoints" / "ckpt-100.data-*"))[0]
    raw = bytearray(open(data, "rb").read())
    raw[len(raw) // 3] ^= 0xFF  # passes the size check; the read itself fails
    open(data, "wb").write(bytes(raw))
    with pytest.raises(CheckpointReadError, match=r"ckpt-100.*truncated or unreadable"):
        warm_start(toy.ToyMLM().funnel, str(tmp_path / "run"))


def test_fallback_and_listing_work_through_tf_io_gfile(tmp_path):
    """ram:// stands in for gs://: a truncated newest checkpoint and a missing state file."""
    import uuid
    d = f"ram://ckpt_{uuid.uuid4().hex}"
    _toy_run(d)
    data = tf.io.gfile.glob(f"{d}/checkpoints/ckpt-200.data-*")[0]
    with tf.io.gfile.GFile(data, "rb") as f:
        raw = f.read()
    tf.io.gfile.remove(data)  # ram:// appends on "wb"
    with tf.io.gfile.GFile(data, "wb") as f:
        f.write(raw[: len(raw) // 2])
    tf.io.gfile.remove(f"{d}/checkpoints/checkpoint")
    ck, step = _fresh(d)
    assert ck.restore_latest().endswith("ckpt-100") and int(step.numpy()) == 100
    step.assign(200)  # replaces the broken files (ram:// would append to them)
    assert ck.save().endswith("ckpt-200")
    ck2, step2 = _fresh(d)
    assert ck2.restore_latest().endswith("ckpt-200") and int(step2.numpy()) == 200


def test_deeper_model_checkpoint_is_refused_not_partially_restored(tmp_path):
    """Every variable of the 1-decoder-layer model exists in the 2-layer model's checkpoint, so
    TF's own matching passes (a silent partial restore); the weight-table sizes differ."""
    step = tf.Variable(5, dtype=tf.int64)
    TrainingCheckpoint(str(tmp_path), {"model": FunnelForMaskedLM(tiny(num_decoder_layers=2))},
                       step).save()
    before = _files(tmp_path)
    ck = TrainingCheckpoint(str(tmp_path), {"model": FunnelForMaskedLM(tiny())},
                            tf.Variable(0, dtype=tf.int64))
    with pytest.raises(CheckpointMismatchError, match=r"another model config \(model has \d+ "):
        ck.restore_latest()
    assert _files(tmp_path) == before


def test_interrupted_save_leaves_no_partial_files(tmp_path, monkeypatch):
    """A second Ctrl-C while a checkpoint is being written: the partial ckpt-300 goes away."""
    ck, step, _ = _toy_run(tmp_path)
    from tensorflow.python.checkpoint import functional_saver

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(functional_saver.gen_io_ops, "merge_v2_checkpoints", interrupted)
    step.assign(300)
    with pytest.raises(KeyboardInterrupt):
        ck.save()
    assert _leftovers(tmp_path) == []


def test_model_dir_that_is_a_checkpoints_folder_is_refused(tmp_path):
    """--model_dir=RUN/checkpoints would otherwise start from scratch in RUN/checkpoints/checkpoints."""
    _toy_run(tmp_path / "run")
    ck, _ = _fresh(tmp_path / "run" / "checkpoints")
    with pytest.raises(CheckpointError, match=r"holds training checkpoints itself \(ckpt-200.*"
                                              r"--model_dir=.*run\)"):
        ck.restore_latest()
    assert not (tmp_path / "run" / "checkpoints" / "checkpoints").exists()


def test_foreign_checkpoint_files_are_refused(tmp_path):
    ck = tf.train.Checkpoint(v=tf.Variable(1.0))
    ck.write(str(tmp_path / "checkpoints" / "model.ckpt-5"))
    with pytest.raises(CheckpointError, match=r"not written by a training run \(model.ckpt-5.index"):
        _fresh(tmp_path)[0].restore_latest()


def test_changed_input_pipeline_is_a_mismatch_not_a_corrupt_checkpoint(tmp_path):
    step = tf.Variable(5, dtype=tf.int64)
    it = iter(tf.data.Dataset.range(100).shuffle(10, seed=1))
    next(it)
    TrainingCheckpoint(str(tmp_path), {"model": toy.ToyMLM()}, step, data_iterator=it).save()
    before = _files(tmp_path)
    other = iter(tf.data.Dataset.range(100).batch(4))  # e.g. another batch size
    ck = TrainingCheckpoint(str(tmp_path), {"model": toy.ToyMLM()}, tf.Variable(0, dtype=tf.int64),
                            data_iterator=other)
    with pytest.raises(CheckpointMismatchError, match=r"input pipeline.*--data_resume=replay"):
        ck.restore_latest()
    assert _files(tmp_path) == before


def test_state_file_with_paths_of_another_location_is_rewritten(tmp_path):
    """A model_dir copied elsewhere whose state file names absolute paths of the old place: the
    manager must not keep (and later sweep) files there."""
    _toy_run(tmp_path / "old")
    shutil.copytree(tmp_path / "old", tmp_path / "new")
    old_dir = str(tmp_path / "old" / "checkpoints")
    checkpoint_management.update_checkpoint_state_internal(
        str(tmp_path / "new" / "checkpoints"), os.path.join(old_dir, "ckpt-200"),
        all_model_checkpoint_paths=[os.path.join(old_dir, f"ckpt-{s}") for s in (100, 200)])
    ck, _ = _fresh(tmp_path / "new")
    assert ck.restore_latest() == str(tmp_path / "new" / "checkpoints" / "ckpt-200")
    assert ck.latest == str(tmp_path / "new" / "checkpoints" / "ckpt-200")
    assert "old" not in (tmp_path / "new" / "checkpoints" / "checkpoint").read_text()


def test_failed_async_write_is_reported_at_wait_and_leaves_no_partial_files(tmp_path,
                                                                            monkeypatch):
    """An async save whose background write fails (disk full at the merge): `save()` returns,
    `wait()` raises CheckpointWriteError naming the checkpoint and the intact previous one, the
    partial files are gone, the state file never named it, and the next save works."""
    from tensorflow.python.checkpoint import functional_saver

    ck, step, m = _toy_run(tmp_path, async_save=True)
    assert ck.checkpoint._async_checkpointer_impl is not None  # TF's async path was taken

    def full(*a, **k):
        raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")
    monkeypatch.setattr(functional_saver.gen_io_ops, "merge_v2_checkpoints", full)
    step.assign(300)
    ck.save()
    with pytest.raises(CheckpointWriteError) as e:
        ck.wait()
    msg = one_line(e.value)
    assert "ckpt-300" in msg and "no space left on device" in msg and "step 200" in msg
    assert _leftovers(tmp_path) == [] and ck.latest.endswith("ckpt-200")
    monkeypatch.undo()
    assert _fresh(tmp_path)[0].restore_latest().endswith("ckpt-200")
    step.assign(400)
    ck.save(wait=True)
    assert ck.latest.endswith("ckpt-400")
