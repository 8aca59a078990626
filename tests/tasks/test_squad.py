"""SQuAD tasks: the answer-class model, the loss, files, and metrics from crafted logits."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from funnel_tf.tasks import TaskError, get_task
from funnel_tf.tasks.squad import FunnelForSquad
from funnel_tf.text.squad_json import SquadData, SquadExample

CONTEXT = "the river runs under the old stone bridge near the village."


def _data(v2=True):
    examples = [
        SquadExample("q1", "what is old?", CONTEXT, [("stone bridge", CONTEXT.index("stone"))]),
        SquadExample("q2", "where is the river?", CONTEXT,
                     [("under the old stone bridge", CONTEXT.index("under"))]),
    ]
    if v2:
        examples.append(SquadExample("q3", "who built the moon?", CONTEXT, [], True))
    return SquadData(examples, "v2.0" if v2 else "1.1", v2)


@pytest.fixture(scope="module")
def small_config(micro_config):
    """micro_config with 2 one-layer blocks and one decoder layer: the head checks need no more."""
    return micro_config.replace(block_sizes=[1, 1], block_repeats=[1, 1], num_decoder_layers=1, d_model=16,
                                d_head=8, d_inner=32)


def _inputs(config, seq_len=16):
    ids = tf.constant([[3, 5, 6, 7, 8, 9, 10, 11] + [0] * (seq_len - 8)] * 2, tf.int32)
    p_mask = tf.constant([[0, 1, 1, 0, 0, 0, 0, 1] + [1] * (seq_len - 8)] * 2, tf.int32)
    return {"input_ids": ids % config.vocab_size, "attention_mask": tf.cast(ids > 0, tf.int32),
            "token_type_ids": tf.zeros_like(ids), "p_mask": p_mask}


def test_model_masks_and_answer_class(small_config):
    model = FunnelForSquad(small_config, answer_class=True)
    inputs = _inputs(small_config)
    out = model(inputs)
    start = out["start_logits"].numpy()
    assert np.all(start[:, [1, 2, 7, 8]] < -1e29) and np.all(start[:, [0, 3, 4]] > -1e3)
    assert out["cls_logits"].shape == (2,) and out["cls_logits"].dtype == tf.float32
    head = sorted(v.path.split("/", 1)[1] for v in model.trainable_variables
                  if not v.path.startswith("funnel/"))
    assert head == ["answer_class_dense/bias", "answer_class_dense/kernel",
                    "answer_class_logit/kernel", "qa_outputs/bias", "qa_outputs/kernel"]
    clone = FunnelForSquad.from_config(model.get_config())
    assert clone.answer_class and len(clone.weights) == len(model.weights)
    assert "cls_logits" not in FunnelForSquad(small_config, answer_class=False)(inputs)


def test_loss_matches_the_original_formula(small_config):
    for version in ("1.1", "2.0"):
        task = get_task(f"squad_v{version}")
        model = task.build_model(small_config)
        features = dict(_inputs(small_config), start_positions=tf.constant([3, 0]),
                        end_positions=tf.constant([5, 0]), is_impossible=tf.constant([0, 1]))
        loss, stats = task.per_example_loss(model, features, training=False)
        out = model(task.model_inputs(features))

        def ce(logits, pos):
            logits = logits.numpy().astype(np.float64)
            logz = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
            return logz - logits[np.arange(2), pos]

        expected = 0.5 * (ce(out["start_logits"], [3, 0]) + ce(out["end_logits"], [5, 0]))
        if version == "2.0":
            z = out["cls_logits"].numpy().astype(np.float64)
            y = np.array([0.0, 1.0])
            expected += 0.5 * (np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z))))
            assert "cls_correct" in stats
        np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-5)


def test_files_and_version_checks(tmp_path, shared_data):
    v2 = get_task("squad_v2.0")
    with pytest.raises(FileNotFoundError, match="dev-v2.0.json"):
        v2.split_path(str(tmp_path), "dev")
    (tmp_path / "v2.0").mkdir()
    (tmp_path / "v2.0" / "dev-v2.0.json").write_text("{}")
    assert v2.split_path(str(tmp_path), "dev").endswith("v2.0/dev-v2.0.json")
    v1 = get_task("squad_v1.1", files={"dev": str(shared_data / "squad/v2.0/"
                                                                 "dev-v2.0.first5articles.json")})
    with pytest.raises(TaskError, match="unanswerable.*squad_v2.0"):
        v1.load(None, "dev")


def _gold_logits(task, data, tokenizer, hp):
    """Logits that put all mass on each window's gold span (or on CLS for impossible ones)."""
    eval_data = task.eval_data(data, tokenizer, hp, global_batch=4)
    rows = list(eval_data.dataset.as_numpy_iterator())
    n = len(rows)
    start = np.full((n, hp.max_seq_length), -10.0, np.float32)
    end = start.copy()
    cls = np.zeros(n, np.float32)
    feats = eval_data.aux
    for f in range(len(feats)):
        ex = data.examples[feats["example_index"][f]]
        if ex.is_impossible:
            cls[f] = 5.0
            start[f, 0] = end[f, 0] = 10.0
            continue
        cls[f] = -5.0
        a0, a1 = ex.answer_span
        starts, ends = feats["token_char_start"][f], feats["token_char_end"][f]
        toks = np.flatnonzero((ends > a0) & (starts < a1) & (starts >= 0))
        start[f, toks[0]] = end[f, toks[-1]] = 10.0
    outputs = {"start_logits": start, "end_logits": end, "cls_logits": cls,
               "example_index": np.array([r["example_index"] for r in rows], np.int32)}
    return eval_data, outputs


def test_metrics_and_prediction_files(demo_tokenizer, tmp_path):
    task = get_task("squad_v2.0")
    hp = task.default_hparams().replace(max_seq_length=32, doc_stride=8, max_query_length=8)
    data = _data()
    eval_data, outputs = _gold_logits(task, data, demo_tokenizer, hp)
    assert eval_data.num_rows >= 3 and len(outputs["cls_logits"]) % 4 == 0
    m = task.compute_metrics("dev", eval_data, outputs, hp)
    assert m["HasAns_exact"] == 100.0 and m["best_f1"] == 100.0 and m["total"] == 3
    paths = task.write_predictions("dev", eval_data, outputs, hp, str(tmp_path))
    assert [os.path.basename(p) for p in paths] == [
        "predictions.json", "null_odds.json", "predictions_thresholded.json"]
    preds = json.load(open(paths[0]))
    assert preds["q1"] == "stone bridge" and preds["q2"] == "under the old stone bridge"
    odds = json.load(open(paths[1]))
    assert odds["q3"] == 5.0 and odds["q1"] == -5.0
    assert json.load(open(paths[2]))["q3"] == ""

    v1 = get_task("squad_v1.1")
    data1 = _data(v2=False)
    eval_data, outputs = _gold_logits(v1, data1, demo_tokenizer, hp)
    outputs.pop("cls_logits")
    assert v1.compute_metrics("dev", eval_data, outputs, hp) == {
        "exact_match": 100.0, "f1": 100.0, "total": 2}
