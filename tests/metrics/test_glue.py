"""GLUE metric dicts, main metrics and submission TSVs, checked against hand-computed values."""

import csv
import math
import os

import numpy as np
import pytest

from funnel_tf.metrics import glue

# Binary example shared with test_classification: preds [1,1,0,0,1] vs labels [1,0,1,0,1]
#   TP=2 FP=1 FN=1 TN=1 -> accuracy 3/5, F1 4/6, MCC 1/6
P = [1, 1, 0, 0, 1]
Y = [1, 0, 1, 0, 1]


@pytest.mark.parametrize("name, key", [
    ("CoLA", "cola"), ("SST-2", "sst-2"), ("sst2", "sst-2"), ("sst_2", "sst-2"), ("STS-B", "sts-b"),
    ("stsb", "sts-b"), ("MNLI", "mnli"), ("mnli_matched", "mnli-m"), ("MNLI-mm", "mnli-mm"),
    ("mnli_mismatched", "mnli-mm"), ("diagnostic", "ax"), ("AX", "ax"), ("WNLI", "wnli")])
def test_canonical_task(name, key):
    assert glue.canonical_task(name) == key


def test_unknown_task_names_the_choices():
    with pytest.raises(ValueError, match="unknown GLUE task 'sst-3'.*cola"):
        glue.canonical_task("sst-3")


def test_main_metric_per_task():
    expected = {"cola": "mcc", "sst-2": "accuracy", "mrpc": "accuracy_f1_mean", "sts-b": "pearson_spearman_mean",
                "qqp": "accuracy_f1_mean", "mnli": "matched_accuracy", "mnli-m": "accuracy",
                "mnli-mm": "accuracy", "qnli": "accuracy", "rte": "accuracy", "wnli": "accuracy", "ax": "mcc"}
    assert {t: glue.main_metric(t) for t in glue.GLUE_TASKS} == expected


def test_main_metric_is_a_key_of_the_metrics():
    for task in glue.GLUE_TASKS:
        if task == "mnli":
            out = glue.compute_glue_metrics(task, {"matched": [0, 1], "mismatched": [1, 1]},
                                            {"matched": [0, 0], "mismatched": [1, 2]})
        elif task == "sts-b":
            out = glue.compute_glue_metrics(task, [0.5, 1.0, 3.0], [1.0, 2.0, 2.5])
        else:
            out = glue.compute_glue_metrics(task, [0, 1, 1], [0, 1, 0])
        assert glue.main_metric(task) in out, task


def test_label_names_follow_the_original_order():
    assert glue.label_names("MNLI") == ("contradiction", "entailment", "neutral")
    assert glue.label_names("rte") == ("entailment", "not_entailment")
    assert glue.label_names("qnli") == ("entailment", "not_entailment")
    assert glue.label_names("cola") == ("0", "1")
    assert glue.label_names("sts-b") is None


def test_cola():
    out = glue.compute_glue_metrics("CoLA", P, Y)
    assert out == pytest.approx({"mcc": 1 / 6, "accuracy": 0.6})


def test_mrpc_and_qqp():
    # accuracy 0.6, F1 2/3, mean (0.6 + 2/3) / 2 = 19/30
    for task in ("MRPC", "QQP"):
        out = glue.compute_glue_metrics(task, P, Y)
        assert out == pytest.approx({"accuracy": 0.6, "f1": 2 / 3, "accuracy_f1_mean": 19 / 30})


def test_logits_are_argmaxed():
    logits = np.array([[0.1, 0.9], [-1.0, 2.0], [3.0, 0.0], [0.2, 0.1], [0.0, 5.0]])  # argmax = P
    assert glue.compute_glue_metrics("mrpc", logits, Y) == glue.compute_glue_metrics("mrpc", P, Y)
    with pytest.raises(ValueError, match="3 logit columns but the task has 2 classes"):
        glue.compute_glue_metrics("rte", np.zeros((2, 3)), [0, 1])


def test_stsb():
    # pearson([1,2,3,4],[2,4,5,9]) = 11/sqrt(130) (see test_classification); both strictly increasing -> spearman 1
    r = 11 / math.sqrt(130)
    out = glue.compute_glue_metrics("STS-B", np.array([[1.0], [2.0], [3.0], [4.0]]), [2, 4, 5, 9])
    assert out == pytest.approx({"pearson": r, "spearman": 1.0, "pearson_spearman_mean": (r + 1) / 2})


def test_mnli_matched_and_mismatched():
    # matched: [0,1,2] vs [0,1,1] -> 2/3; mismatched: [2,2] vs [neutral, entailment] = [2,1] -> 1/2
    out = glue.compute_glue_metrics(
        "mnli", {"matched": [0, 1, 2], "mismatched": [2, 2]},
        {"matched": [0, 1, 1], "mismatched": ["neutral", "entailment"]})
    assert out == pytest.approx({"matched_accuracy": 2 / 3, "mismatched_accuracy": 0.5})
    assert glue.compute_glue_metrics("mnli_matched", [0, 1, 2], [0, 1, 1]) == pytest.approx({"accuracy": 2 / 3})
    with pytest.raises(ValueError, match="'matched' and 'mismatched'"):
        glue.compute_glue_metrics("mnli", [0, 1], [0, 1])


def test_ax_three_class_mcc():
    # [0,1,2,0,1,2] vs [0,1,2,1,2,0] -> 0.25 (hand-derived in test_classification)
    assert glue.compute_glue_metrics("ax", [0, 1, 2, 0, 1, 2], [0, 1, 2, 1, 2, 0])["mcc"] == pytest.approx(0.25)


def test_string_labels_map_through_the_task_labels():
    out = glue.compute_glue_metrics("rte", [0, 1, 1], ["entailment", "not_entailment", "entailment"])
    assert out["accuracy"] == pytest.approx(2 / 3)


def test_labels_outside_the_task_set_raise():
    with pytest.raises(ValueError, match=r"qnli: labels\[1\] = 2 is outside the task's label ids 0..1"):
        glue.compute_glue_metrics("qnli", [0, 1], [0, 2])
    with pytest.raises(ValueError, match=r"labels\[0\] = 'neutral' is not one of the task's labels"):
        glue.compute_glue_metrics("rte", [0], ["neutral"])
    with pytest.raises(ValueError, match="not an integer class id"):
        glue.compute_glue_metrics("sst-2", [0.5, 1.0], [0, 1])
    with pytest.raises(ValueError, match="2 predictions but 3 labels"):
        glue.compute_glue_metrics("sst-2", [0, 1], [0, 1, 1])


def _read_tsv(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def test_submission_files_names_and_contents(tmp_path):
    written = []
    for task in glue.GLUE_TASKS:
        if task == "mnli":
            continue
        preds = [0.5, 7.0, -1.0] if task == "sts-b" else [0, 1, 1]
        written += glue.write_glue_submission(task, preds, str(tmp_path))
    names = sorted(os.path.basename(p) for p in written)
    assert names == sorted(["CoLA.tsv", "SST-2.tsv", "MRPC.tsv", "STS-B.tsv", "QQP.tsv", "MNLI-m.tsv",
                            "MNLI-mm.tsv", "QNLI.tsv", "RTE.tsv", "WNLI.tsv", "AX.tsv"])
    assert sorted(os.listdir(tmp_path)) == names  # no temp files left behind
    assert _read_tsv(tmp_path / "RTE.tsv") == [["index", "prediction"], ["0", "entailment"],
                                               ["1", "not_entailment"], ["2", "not_entailment"]]
    assert _read_tsv(tmp_path / "AX.tsv")[1:] == [["0", "contradiction"], ["1", "entailment"], ["2", "entailment"]]
    assert _read_tsv(tmp_path / "CoLA.tsv")[1:] == [["0", "0"], ["1", "1"], ["2", "1"]]
    # STS-B clipped to [0, 5]
    assert _read_tsv(tmp_path / "STS-B.tsv") == [["index", "prediction"], ["0", "0.5"], ["1", "5.0"], ["2", "0.0"]]
    assert (tmp_path / "QQP.tsv").read_text() == "index\tprediction\n0\t0\n1\t1\n2\t1\n"


def test_submission_mnli_both_files_with_indices_and_logits(tmp_path):
    logits = np.array([[0.0, 0.0, 9.0], [9.0, 0.0, 0.0]])  # argmax -> neutral, contradiction
    paths = glue.write_glue_submission("MNLI", {"matched": logits, "mismatched": ["entailment"]}, str(tmp_path),
                                       indices={"matched": [10, 11], "mismatched": [7]})
    assert [os.path.basename(p) for p in paths] == ["MNLI-m.tsv", "MNLI-mm.tsv"]
    assert _read_tsv(tmp_path / "MNLI-m.tsv")[1:] == [["10", "neutral"], ["11", "contradiction"]]
    assert _read_tsv(tmp_path / "MNLI-mm.tsv")[1:] == [["7", "entailment"]]


def test_submission_validates_before_writing_anything(tmp_path):
    out = tmp_path / "sub"
    with pytest.raises(ValueError, match=r"predictions\[0\] = 3 is outside"):
        glue.write_glue_submission("mnli", {"matched": [0, 1], "mismatched": [3]}, str(out))
    assert not out.exists() or not os.listdir(out)
    with pytest.raises(ValueError, match="not finite"):
        glue.write_glue_submission("sts-b", [1.0, float("nan")], str(out))
    with pytest.raises(ValueError, match="3 indices but 2 predictions"):
        glue.write_glue_submission("rte", [0, 1], str(out), indices=[0, 1, 2])
    assert not out.exists() or not os.listdir(out)


def test_cola_dev_majority_baseline(shared_data):
    """Real CoLA dev (721 acceptable / 322 not): all-1 predictions -> accuracy 721/1043, MCC 0 (degenerate)."""
    rows = _read_tsv(shared_data / "glue" / "CoLA" / "dev.tsv")
    labels = [int(r[1]) for r in rows]
    assert len(labels) == 1043
    out = glue.compute_glue_metrics("cola", [1] * len(labels), labels)
    assert out == pytest.approx({"mcc": 0.0, "accuracy": 721 / 1043})
