"""Classification / regression tasks: GLUE and benchmark readers wired to the model, loss, metrics,
prediction files and label checks."""

import os

import numpy as np
import pytest
import tensorflow as tf

from funnel_tf.tasks import EvalData, TaskError, get_task
from funnel_tf.tasks.classification import GlueTask
from funnel_tf.text.classification import TextExamples
from funnel_tf.text.errors import DataFormatError


def _examples(labels, names=("0", "1"), pair=False):
    n = len(labels)
    return TextExamples([f"text {i}" for i in range(n)], [f"other {i}" for i in range(n)] if pair
                        else None, np.asarray(labels), [str(100 + i) for i in range(n)], names)


def _outputs(logits, order, pad=2):
    """Model outputs as the Predictor returns them: rows in `order`, then padding rows."""
    logits = np.asarray(logits, np.float32)
    rows = np.concatenate([logits[order], np.zeros((pad,) + logits.shape[1:], np.float32)])
    index = np.concatenate([np.asarray(order, np.int32), -np.ones(pad, np.int32)])
    return {"logits": rows, "example_index": index}


def test_glue_registry_covers_every_task_and_label_orders_match_metrics():
    for name, main in [("cola", "mcc"), ("sst-2", "accuracy"), ("mrpc", "accuracy_f1_mean"),
                       ("sts-b", "pearson_spearman_mean"), ("qqp", "accuracy_f1_mean"),
                       ("mnli", "matched_accuracy"), ("qnli", "accuracy"), ("rte", "accuracy"),
                       ("wnli", "accuracy"), ("ax", "mcc")]:
        task = get_task(name)
        assert isinstance(task, GlueTask) and task.main_metric == main
    assert get_task("sts-b").regression and get_task("sts-b").num_outputs == 1
    assert get_task("mnli").eval_splits == ("dev_matched", "dev_mismatched")
    assert get_task("ax").train_split is None and get_task("ax").predict_splits == ("test",)


def test_loads_real_glue_files(shared_data):
    glue = str(shared_data / "glue")
    mrpc = get_task("mrpc")
    dev = mrpc.load(glue, "dev")
    assert len(dev) == 408 and dev.text_b is not None
    assert sorted(np.bincount(dev.labels)) == [129, 279]
    assert not dev.text_a[0].startswith("\ufeff")
    cola = get_task("cola").load(glue, "dev")
    assert len(cola) == 1043 and cola.text_b is None
    assert get_task("stsb").load(glue, "dev").labels.dtype == np.float32


def test_missing_files_are_listed_together(tmp_path):
    (tmp_path / "SST-2").mkdir()
    (tmp_path / "SST-2" / "train.tsv").write_text("sentence\tlabel\nok\t1\n")
    with pytest.raises(TaskError) as e:
        get_task("sst-2").check_files(str(tmp_path), ["train", "dev", "test"])
    msg = str(e.value)
    assert "dev.tsv" in msg and "test.tsv" in msg and "train" not in msg.split("missing")[1].split(
        "dev")[0]


def test_label_outside_the_task_set(tmp_path):
    (tmp_path / "SST-2").mkdir()
    (tmp_path / "SST-2" / "train.tsv").write_text("sentence\tlabel\ngood\t1\nbad\t2\n")
    with pytest.raises(DataFormatError, match=r"train.tsv:3.*label '2'"):
        get_task("sst-2").load(str(tmp_path), "train")
    with pytest.raises(TaskError, match="outside the task's 2 labels"):
        get_task("sst-2").check_examples(_examples([0, 1, 3]), "train")
    with pytest.raises(TaskError, match="expects text pairs"):
        get_task("rte").check_examples(_examples([0, 1]), "dev")


def test_loss_is_cross_entropy_and_mse(micro_config):
    task = get_task("rte")
    model = task.build_model(micro_config)
    ids = tf.constant([[101 % micro_config.vocab_size, 5, 6, 7, 0, 0, 0, 0]] * 2, tf.int32)
    features = {"input_ids": ids, "attention_mask": tf.cast(ids > 0, tf.int32),
                "token_type_ids": tf.zeros_like(ids), "label": tf.constant([0, 1])}
    loss, stats = task.per_example_loss(model, features, training=False)
    logits = model(task.model_inputs(features))["logits"].numpy()
    expected = -np.log(np.exp(logits) / np.exp(logits).sum(-1, keepdims=True))[[0, 1], [0, 1]]
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-5)
    assert set(stats) == {"correct"}

    sts = get_task("sts-b")
    reg = sts.build_model(micro_config)
    features["label"] = tf.constant([1.5, 4.0])
    loss, stats = sts.per_example_loss(reg, features, training=False)
    score = reg(sts.model_inputs(features))["logits"].numpy()[:, 0]
    np.testing.assert_allclose(loss.numpy(), (score - [1.5, 4.0]) ** 2, rtol=1e-5)
    assert stats == {} and list(sts.metrics) == ["loss"]


def test_metrics_reorder_rows_and_drop_padding():
    task = get_task("mrpc")
    labels = [1, 0, 1, 1]
    logits = [[0, 1], [1, 0], [1, 0], [0, 1]]  # predictions 1 0 0 1: acc 0.75, f1 0.8
    data = EvalData(None, _examples(labels, pair=True), 4)
    m = task.compute_metrics("dev", data, _outputs(logits, [2, 0, 3, 1]), task.default_hparams())
    assert m["accuracy"] == pytest.approx(0.75) and m["f1"] == pytest.approx(0.8)
    assert m["accuracy_f1_mean"] == pytest.approx(0.775)
    broken = _outputs(logits, [2, 0, 3, 1])
    broken["example_index"][1] = 2  # example 0 lost, example 2 twice
    with pytest.raises(RuntimeError, match="exactly once"):
        task.compute_metrics("dev", data, broken, task.default_hparams())


def test_mnli_metrics_combine_matched_and_mismatched():
    task = get_task("mnli")
    names = ("contradiction", "entailment", "neutral")
    per = {}
    for split, logits in (("dev_matched", [[1, 0, 0], [0, 1, 0]]),
                          ("dev_mismatched", [[1, 0, 0], [1, 0, 0]])):
        data = EvalData(None, _examples([0, 1], names, pair=True), 2)
        per[split] = task.compute_metrics(split, data, _outputs(logits, [0, 1], pad=0),
                                          task.default_hparams())
    merged = task.combine_metrics(per)
    assert merged == {"matched_accuracy": 1.0, "mismatched_accuracy": 0.5}


def test_glue_submission_files(tmp_path):
    hp = get_task("cola").default_hparams()
    cola = get_task("cola")
    data = EvalData(None, _examples([-1, -1, -1]), 3)
    paths = cola.write_predictions("test", data, _outputs([[0, 1], [1, 0], [0, 1]], [0, 1, 2]),
                                   hp, str(tmp_path))
    assert [os.path.basename(p) for p in paths] == ["CoLA.tsv"]
    assert open(paths[0]).read().splitlines() == ["index\tprediction", "100\t1", "101\t0",
                                                  "102\t1"]
    paths = cola.write_predictions("dev", data, _outputs([[0, 1], [1, 0], [0, 1]], [0, 1, 2]),
                                   hp, str(tmp_path))
    assert os.path.basename(paths[0]) == "dev_CoLA.tsv"
    mnli = get_task("mnli")
    names = ("contradiction", "entailment", "neutral")
    data = EvalData(None, _examples([-1, -1], names, pair=True), 2)
    paths = mnli.write_predictions("test_mismatched", data,
                                   _outputs([[0, 0, 1], [0, 1, 0]], [1, 0]), hp, str(tmp_path))
    assert os.path.basename(paths[0]) == "MNLI-mm.tsv"
    assert open(paths[0]).read().splitlines()[1:] == ["100\tneutral", "101\tentailment"]
    assert sorted(os.listdir(tmp_path)) == ["CoLA.tsv", "MNLI-mm.tsv", "dev_CoLA.tsv"]


def test_text_classification_and_csv_tasks(tmp_path, shared_data):
    ag = get_task("ag_news", files={"dev": str(shared_data / "textcls/ag_news_csv/test.csv")})
    dev = ag.load(None, "dev")
    assert len(dev) == 7600 and ag.label_names == ("1", "2", "3", "4") and ag.is_pair
    imdb = get_task("imdb", files={"train": str(shared_data / "textcls/imdb_fastbert_sample/"
                                                               "train_sample.csv")})
    train = imdb.load(None, "train")
    assert len(train) == 100 and not any("<br />" in t for t in train.text_a)

    (tmp_path / "train.csv").write_text("text,label\nnice,happy\nbad,sad\nok,happy\n")
    (tmp_path / "dev.csv").write_text("text,label\nfine,happy\nawful,angry\n")
    csv = get_task("csv", files={"train": "train.csv", "dev": "dev.csv"},
                   csv_options={"text_a_column": "text", "label_column": "label"})
    assert csv.load(str(tmp_path), "train").label_names == ("happy", "sad")
    assert csv.num_outputs == 2 and csv.eval_splits == ("dev",)
    with pytest.raises(DataFormatError, match=r"dev.csv:3.*'angry'"):
        csv.load(str(tmp_path), "dev")


def test_prediction_tsv_for_benchmarks(tmp_path):
    task = get_task("imdb")
    data = EvalData(None, _examples([0, 1], ("neg", "pos")), 2)
    path, = task.write_predictions("test", data, _outputs([[2, 0], [0, 2]], [1, 0]),
                                   task.default_hparams(), str(tmp_path))
    lines = open(path).read().splitlines()
    assert lines[0] == "id\tprediction\tp_neg\tp_pos"
    assert lines[1].startswith("100\tneg\t0.88") and lines[2].startswith("101\tpos\t0.11")


def test_tfds_source_needs_a_prepared_dataset(tmp_path):
    task = get_task("rte").use_tfds(str(tmp_path))
    assert not task.needs_data_dir(["train"])
    with pytest.raises(TaskError, match=r"(?s)glue/rte is not prepared.*tfds build glue/rte"):
        task.check_files(None, ["train", "dev"])
