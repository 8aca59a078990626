"""Where a run writes: an --export_dir that overlaps the run or its inputs, or an existing folder
that is not a SavedModel, is refused before anything is written (overwriting used to rmtree
whatever --export_dir named, the whole model_dir included); a second run on a model_dir that a
live run holds is refused with the holder's PID."""

import os

import pytest
import tensorflow as tf

from funnel_tf.errors import UserError, one_line
from funnel_tf.export import check_export_dir, export_saved_model
from funnel_tf.tasks import get_task
from funnel_tf.tasks.defaults import Hparams
from funnel_tf.tasks.finetuning_run import run_finetuning
from funnel_tf.training.run_lock import ModelDirLock, ModelDirLockedError
from tests.tasks.helpers import csv_args, write_csv_task


@pytest.fixture
def config_path(micro_config, tmp_path):
    path = str(tmp_path / "micro.json")
    micro_config.save(path)
    return path


def _tree(path):
    return sorted(os.path.relpath(os.path.join(d, f), path)
                  for d, _, files in os.walk(path) for f in files)


@pytest.fixture
def earlier_run(tmp_path):
    """A model_dir holding an earlier run's files, which nothing may touch."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "ckpt-100.index").write_text("x")
    (run / "eval_results.jsonl").write_text('{"step": 100}\n')
    return run


@pytest.mark.parametrize("where", ["same", "inside", "containing"])
def test_export_dir_overlapping_model_dir_is_refused(config_path, tmp_path, earlier_run, where):
    files = write_csv_task(str(tmp_path / "data"))
    export_dir = {"same": earlier_run, "inside": earlier_run / "export",
                  "containing": tmp_path}[where]
    before = _tree(tmp_path)
    with pytest.raises(UserError, match="overlap") as info:
        run_finetuning(csv_args(str(earlier_run), files, config_path,
                                export_dir=str(export_dir) + "/", overwrite_export=True))
    assert "\n" not in one_line(info.value) and "--model_dir" in str(info.value)
    assert _tree(tmp_path) == before


def test_export_dir_holding_an_input_is_refused(config_path, tmp_path):
    files = write_csv_task(str(tmp_path / "data"))
    with pytest.raises(UserError, match=r"holds --train_file"):
        run_finetuning(csv_args(str(tmp_path / "run"), files, config_path,
                                export_dir=str(tmp_path / "data"), overwrite_export=True))
    assert not (tmp_path / "run").exists() and os.path.exists(files["train"])


def test_overwrite_export_only_replaces_a_saved_model(config_path, tmp_path):
    files = write_csv_task(str(tmp_path / "data"))
    folder = tmp_path / "not_an_export"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="is not a SavedModel") as info:
        run_finetuning(csv_args(str(tmp_path / "run"), files, config_path,
                                export_dir=str(folder), overwrite_export=True))
    assert "\n" not in one_line(info.value)
    assert (folder / "notes.txt").read_text() == "keep me" and not (tmp_path / "run").exists()
    with pytest.raises(UserError, match="already exists"):
        check_export_dir(str(folder))
    (folder / "saved_model.pb").write_bytes(b"")
    check_export_dir(str(folder), overwrite=True)  # an earlier export may be replaced


def test_export_saved_model_never_deletes_a_folder_that_is_not_an_export(micro_config,
                                                                        demo_tokenizer,
                                                                        tmp_path):
    task = get_task("sst-2")
    module = task.serving_module(task.build_model(micro_config), demo_tokenizer,
                                 Hparams(max_seq_length=16))
    folder = tmp_path / "precious"
    folder.mkdir()
    (folder / "data.tsv").write_text("keep me")
    with pytest.raises(UserError, match="is not a SavedModel"):
        export_saved_model(module, str(folder), overwrite=True)
    assert _tree(folder) == ["data.tsv"] and sorted(os.listdir(tmp_path)) == ["precious"]


def test_second_run_on_a_held_model_dir_is_refused_with_the_holders_pid(config_path, tmp_path):
    files = write_csv_task(str(tmp_path / "data"))
    model_dir = str(tmp_path / "run")
    with ModelDirLock(model_dir):  # a live run (this process) holds it
        with pytest.raises(ModelDirLockedError, match=f"PID {os.getpid()}") as info:
            run_finetuning(csv_args(model_dir, files, config_path, do_train=False))
        assert "\n" not in one_line(info.value)
        assert sorted(os.listdir(model_dir)) == ["RUN_LOCK"]
    assert not tf.io.gfile.exists(os.path.join(model_dir, "RUN_LOCK"))
