"""Empty or tiny splits are refused at once with one line naming the file, before anything is
written (an empty train split used to spin for minutes in the evaluation-mark loop)."""

import os

import pytest

from funnel_tf.errors import UserError, one_line
from funnel_tf.finetuning.run import run_finetuning
from tests.tasks.helpers import csv_args, csv_rows, write_csv_task


@pytest.fixture
def config_path(micro_config, tmp_path):
    path = str(tmp_path / "micro.json")
    micro_config.save(path)
    return path


def _refused(args, match):
    with pytest.raises(UserError, match=match) as info:
        run_finetuning(args)
    assert "\n" not in one_line(info.value)
    assert not os.path.exists(args.model_dir), os.listdir(args.model_dir)
    return str(info.value)


@pytest.mark.timeout(60)
def test_header_only_train_split_fails_at_once(config_path, tmp_path):
    files = write_csv_task(str(tmp_path / "data"), n_train=0)
    msg = _refused(csv_args(str(tmp_path / "run"), files, config_path,
                            csv_options=dict(text_a_column="text", label_column="label",
                                             label_names=["neg", "pos"])),
                   "no training rows")
    assert files["train"] in msg


@pytest.mark.timeout(60)
def test_every_train_row_skipped_fails_at_once(config_path, tmp_path):
    files = write_csv_task(str(tmp_path / "data"))
    with open(files["train"], "w") as f:
        f.write("text\tlabel\n" + "".join(f"row {i} without a label\n" for i in range(5)))
    msg = _refused(csv_args(str(tmp_path / "run"), files, config_path,
                            csv_options=dict(text_a_column="text", label_column="label",
                                             label_names=["neg", "pos"]),
                            run=dict(skip_malformed=True)),
                   "no training rows")
    assert "5 malformed rows skipped" in msg


@pytest.mark.timeout(60)
def test_fewer_train_rows_than_one_batch_fails(config_path, tmp_path):
    files = write_csv_task(str(tmp_path / "data"), n_train=40)
    msg = _refused(csv_args(str(tmp_path / "run"), files, config_path,
                            hparams=dict(batch_size=8), run=dict(max_train_examples=5)),
                   "5 training rows")
    assert "--batch_size" in msg and "8" in msg


@pytest.mark.timeout(60)
@pytest.mark.parametrize("split", ["dev", "test"])
def test_empty_eval_or_predict_split_fails_before_training(config_path, tmp_path, split):
    files = write_csv_task(str(tmp_path / "data"), **{f"n_{split}": 0})
    msg = _refused(csv_args(str(tmp_path / "run"), files, config_path, do_predict=True),
                   f"no {'evaluation' if split == 'dev' else 'prediction'} rows")
    assert files[split] in msg
