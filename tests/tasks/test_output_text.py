"""Output text (issue 20): every JSON we write is valid JSON (no bare NaN), the evaluation plan
reads as English, GLUE example ids follow one rule, and a CSV column past the row's end says so."""

import json

import numpy as np
import pytest

from funnel_tf.json_text import dumps
from funnel_tf.text import glue
from funnel_tf.text.classification import read_labelled_file
from funnel_tf.text.errors import DataFormatError
from funnel_tf.engine.progress import evaluation_plan



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


# The finetune summary, metrics.jsonl and eval_results.jsonl of a real run are checked for strict
# JSON (a NaN ETA written as null) and the evaluation plan's log line in
# tests/tasks/test_run_identity.py, whose first run is finetune.py's main: one run for both.


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
