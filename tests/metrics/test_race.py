"""RACE accuracy overall / middle / high against hand-computed values and the shared RACE files."""

import json

import numpy as np
import pytest

from funnel_tf.metrics import race


def test_accuracy_by_level_by_hand():
    # preds   0  1  2  3  0  1
    # labels  A  B  D  D  B  B   -> 0 1 3 3 1 1
    # correct y  y  n  y  n  y   -> 4/6 overall
    # levels  m  m  h  h  h  m   -> middle idx 0,1,5: 3/3; high idx 2,3,4: 1/3
    out = race.compute_race_metrics([0, 1, 2, 3, 0, 1], ["A", "B", "D", "D", "B", "b"],
                                    ["middle", "middle", "high", "high", "high", "middle"])
    assert out == pytest.approx({"accuracy": 4 / 6, "total": 6, "accuracy_middle": 1.0, "total_middle": 3,
                                 "accuracy_high": 1 / 3, "total_high": 3})


def test_logits_and_ids_as_levels():
    logits = np.array([[0, 9, 0, 0], [0, 0, 0, 9]], dtype=np.float32)  # argmax -> 1 (B), 3 (D)
    out = race.compute_race_metrics(logits, [1, 2], ["high80.txt", "RACE/dev/middle/3.txt"])
    # high80.txt: 1 == 1 correct; middle: 3 != 2 wrong
    assert out == {"accuracy": 0.5, "total": 2, "total_middle": 1, "accuracy_middle": 0.0,
                   "total_high": 1, "accuracy_high": 1.0}


def test_absent_level_has_no_accuracy_key():
    out = race.compute_race_metrics([0, 1], [0, 0], ["high", "high"])
    assert out["total_middle"] == 0 and "accuracy_middle" not in out
    assert out["accuracy_high"] == 0.5


@pytest.mark.parametrize("example_id, level", [
    ("high80.txt", "high"), ("middle1234.txt", "middle"), ("RACE/test/high/7.txt", "high"),
    ("/data/RACE/dev/middle/high3.txt", "middle")])  # directory name wins over file name
def test_level_of(example_id, level):
    assert race.level_of(example_id) == level


def test_errors():
    with pytest.raises(ValueError, match="cannot tell the RACE level"):
        race.level_of("college5.txt")
    with pytest.raises(ValueError, match=r"labels\[1\] = 'E' is not one of A, B, C, D"):
        race.compute_race_metrics([0, 1], ["A", "E"], ["high", "high"])
    with pytest.raises(ValueError, match=r"predictions\[0\] = 4 is outside 0..3"):
        race.compute_race_metrics([4], [0], ["high"])
    with pytest.raises(ValueError, match="4 columns"):
        race.compute_race_metrics(np.zeros((1, 5)), [0], ["high"])
    with pytest.raises(ValueError, match="differ in length"):
        race.compute_race_metrics([0, 1], [0, 1], ["high"])


def test_real_race_files_always_a(shared_data):
    """Always answering "A" on the shared RACE dev+test files: accuracy = share of A answers, per level."""
    preds, labels, levels = [], [], []
    for path in sorted((shared_data / "race" / "RACE").glob("*/*/*.txt")):
        if path.parts[-3] == "train":
            continue
        record = json.loads(path.read_text(encoding="utf-8"))
        for answer in record["answers"]:
            preds.append(0)
            labels.append(answer)
            levels.append(str(path))
    assert len(labels) == 17 + 22  # dev 17 + test 22 questions (PROVENANCE.md)
    out = race.compute_race_metrics(preds, labels, levels)
    for level in race.LEVELS:
        answers = [a for a, lv in zip(labels, levels) if f"/{level}/" in lv]
        assert out[f"total_{level}"] == len(answers)
        assert out[f"accuracy_{level}"] == pytest.approx(answers.count("A") / len(answers))
    assert out["accuracy"] == pytest.approx(labels.count("A") / len(labels))
