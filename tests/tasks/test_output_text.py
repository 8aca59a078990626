"""Output text (issue 20): every JSON we write is valid JSON (no bare NaN), the evaluation plan
reads as English, GLUE example ids follow one rule, and a CSV column past the row's end says so."""

import json
import logging

import numpy as np
import pytest

from funnel_tf.json_text import dumps
from funnel_tf.text import glue
from funnel_tf.text.classification import read_labelled_file
from funnel_tf.text.errors import DataFormatError
from funnel_tf.training.progress import evaluation_plan

from .helpers import DEMO_VOCAB, write_csv_task


def strict_json(text):
    """json.loads that refuses NaN / Infinity (as jq, browsers and most parsers do)."""
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


def test_json_text_writes_null_for_non_finite_numbers():
    obj = {"eta_sec": float("nan"), "x": [np.float32("inf"), -float("inf"), np.int64(3), 0.5],
           "nested": {"mcc": np.float64("nan"), "ok": True, "name": "a"}}
    assert strict_json(dumps(obj)) == {"eta_sec": None, "x": [None, None, 3, 0.5],
                                       "nested": {"mcc": None, "ok": True, "name": "a"}}


def test_finetune_summary_and_metrics_are_valid_json(finetune_main, micro_config, tmp_path,
                                                     capsys):
    config_path = tmp_path / "micro.json"
    micro_config.save(str(config_path))
    files = write_csv_task(str(tmp_path / "data"), n_train=32, n_dev=8, n_test=8)
    from absl import logging as absl_logging

    logged = []
    handler = logging.Handler()
    handler.emit = lambda record: logged.append(record.getMessage())
    absl_logging.get_absl_logger().addHandler(handler)
    # One progress record, at the compiling first loop: no speed yet, so no ETA (NaN inside).
    assert finetune_main(
        "--task=csv", f"--train_file={files['train']}", f"--dev_file={files['dev']}",
        "--text_a_column=text", "--label_column=label", f"--config={config_path}",
        f"--vocab_file={DEMO_VOCAB}", f"--model_dir={tmp_path / 'run'}", "--do_train",
        "--do_eval", "--batch_size=16", "--max_seq_length=16", "--train_steps=2",
        "--steps_per_loop=2", "--log_every=2", "--eval_every=-1", "--verbosity=0") == 0
    absl_logging.get_absl_logger().removeHandler(handler)
    summary = strict_json(capsys.readouterr().out)
    assert summary["train"]["final"]["eta_sec"] is None
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [strict_json(line)["eta_sec"] for line in lines] == [None]
    for line in (tmp_path / "run" / "eval_results.jsonl").read_text().splitlines():
        strict_json(line)
    plan = [m for m in logged if "training rows" in m]
    assert len(plan) == 1 and plan[0].endswith("; evaluating at the end"), logged


@pytest.mark.parametrize("marks, text", [
    ([], "evaluating at the end"),
    ([100, 200], "evaluating at steps 100, 200 and at the end"),
    (list(range(100, 10000, 100)),
     "evaluating at steps 100, 200, 300, 400, 500, ..., 9900 (99 times) and at the end"),
])
def test_evaluation_plan_wording(marks, text):
    assert evaluation_plan(marks) == text


@pytest.mark.parametrize("task, split", [("mrpc", "dev"), ("cola", "dev"), ("rte", "dev"),
                                         ("sst-2", "dev"), ("cola", "train"), ("ax", "test")])
def test_glue_ids_are_the_rows_0_based_index_for_every_task(shared_data, task, split):
    ex = glue.load_glue(task, str(shared_data / "glue"), split)
    assert ex.ids[:3] == ["0", "1", "2"] and ex.ids[-1] == str(len(ex.ids) - 1), ex.ids[:3]


@pytest.mark.parametrize("flag, ref", [("label_column", 2), ("text_a_column", 5),
                                       ("label_column", -3)])
def test_csv_column_past_the_last_one_says_so(tmp_path, flag, ref):
    path = tmp_path / "train.tsv"
    path.write_text("text\tlabel\nwarm river\tpos\ncold stone\tneg\n")
    columns = {"text_a_column": 0, "label_column": 1, flag: ref}
    with pytest.raises(DataFormatError) as info:
        read_labelled_file(str(path), **columns)
    msg = str(info.value)
    assert f"{flag} {ref}: column index out of range for a row of 2 columns" in msg, msg
    assert "expected 2 columns, found 2" not in msg
