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
from funnel_tf.finetuning.run import run_finetuning
from funnel_tf.engine.run_lock import ModelDirLock, ModelDirLockedError
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


@pytest.mark.parametrize("flag", ["predictions_dir", "export_dir", "model_dir"])
def test_an_output_folder_under_a_regular_file_is_refused_up_front(config_path, tmp_path, flag):
    """Issue 20: --predictions_dir / --export_dir under a regular file trained for 195 s, then
    ended in a FailedPreconditionError traceback."""
    files = write_csv_task(str(tmp_path / "data"))
    (tmp_path / "plain").write_text("a file")
    where = str(tmp_path / "plain" / "out")
    paths = dict(model_dir=str(tmp_path / "run"), do_predict=True)
    paths[flag] = where
    model_dir = paths.pop("model_dir")
    before = _tree(tmp_path)
    with pytest.raises(UserError) as info:
        run_finetuning(csv_args(model_dir, files, config_path, **paths))
    msg = one_line(info.value)
    assert msg == f"--{flag} {where} lies under {tmp_path / 'plain'}, which is a file, not a " \
                  f"folder", msg
    assert _tree(tmp_path) == before


def test_a_model_dir_name_too_long_is_refused_before_any_folder_is_made(config_path, tmp_path):
    files = write_csv_task(str(tmp_path / "data"))
    model_dir = tmp_path / "a" / "b" / ("x" * 300) / "run"
    with pytest.raises(UserError, match=r"is 300 bytes, longer than the 255"):
        run_finetuning(csv_args(str(model_dir), files, config_path))
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("task, flag", [("squad_v1.1", "max_query_length"),
                                        ("race", "max_qa_length")])
def test_lengths_that_cannot_fit_the_sequence_are_a_user_error(tmp_path, task, flag):
    """Issue 20: --task=squad with a short --max_seq_length was a ValueError traceback from the
    feature pipeline (max_query_length=64 must be in [1, seq_len - 4])."""
    from funnel_tf.finetuning.args import FinetuneArgs
    from tests.tasks.helpers import DEMO_VOCAB

    with pytest.raises(UserError) as info:
        run_finetuning(FinetuneArgs(task=task, model_dir=str(tmp_path / "run"), config="tiny",
                                    vocab_file=DEMO_VOCAB, data_dir=str(tmp_path),
                                    hparams=dict(max_seq_length=32)))
    assert one_line(info.value).startswith(f"--{flag}=") and "at most --max_seq_length - 4 = 28" \
        in one_line(info.value), one_line(info.value)
    assert not (tmp_path / "run").exists()
