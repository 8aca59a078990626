"""RACE task: files, 4-way loss, per-level metrics, answers file, serving features = reader's."""

import json

import numpy as np
import pytest
import tensorflow as tf

from funnel_tf.tasks import EvalData, get_task
from funnel_tf.text.race import RaceExamples, encode_race_examples


def test_loads_the_real_files(shared_data):
    task = get_task("race")
    dev = task.load(str(shared_data / "race"), "dev")
    assert len(dev) == 17 and set(dev.levels) == {"middle", "high"}
    assert task.check_files(str(shared_data / "race"), ["train", "dev", "test"])


def test_missing_level_folder(tmp_path):
    (tmp_path / "dev" / "high").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="middle"):
        get_task("race").split_path(str(tmp_path), "dev")


def test_loss_and_metrics(micro_config, tmp_path):
    task = get_task("race")
    model = task.build_model(micro_config)
    ids = tf.random.stateless_uniform([2, 4, 8], [1, 2], 1, micro_config.vocab_size, tf.int32)
    features = {"input_ids": ids, "attention_mask": tf.ones_like(ids),
                "token_type_ids": tf.zeros_like(ids), "label": tf.constant([2, 0])}
    loss, stats = task.per_example_loss(model, features, training=False)
    logits = model(task.model_inputs(features))["logits"].numpy()
    assert logits.shape == (2, 4)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    np.testing.assert_allclose(loss.numpy(), -logp[[0, 1], [2, 0]], rtol=1e-5)

    examples = RaceExamples(["a"] * 3, [["q"] * 4] * 3, np.array([0, 3, 1], np.int32),
                            ["middle", "high", "high"], ["m#0", "h#0", "h#1"])
    logits = np.eye(4, dtype=np.float32)[[0, 3, 2]]  # right, right, wrong
    outputs = {"logits": np.concatenate([logits[[2, 0, 1]], np.zeros((1, 4), np.float32)]),
               "example_index": np.array([2, 0, 1, -1], np.int32)}
    data = EvalData(None, examples, 3)
    m = task.compute_metrics("dev", data, outputs, task.default_hparams())
    assert m["accuracy"] == pytest.approx(2 / 3) and m["accuracy_middle"] == 1.0
    assert m["accuracy_high"] == 0.5 and m["total_high"] == 2
    path, = task.write_predictions("test", data, outputs, task.default_hparams(), str(tmp_path))
    assert json.load(open(path)) == {"m#0": "A", "h#0": "D", "h#1": "C"}


def test_serving_features_equal_the_reader(micro_config, demo_tokenizer):
    from funnel_tf.export import MultipleChoiceServing

    article = "the boat left the harbor at dawn and came back when the moon rose."
    questions = ["the boat came back _ .", "when did the boat leave?"]
    options = [["at noon", "when the moon rose", "never", "in winter"],
               ["at dawn", "at noon", "at night", "in spring"]]
    from funnel_tf.text.race import build_qa

    examples = RaceExamples([article] * 2, [[build_qa(q, o) for o in opts]
                                            for q, opts in zip(questions, options)],
                            np.array([1, 0], np.int32), ["middle"] * 2, ["a", "b"])
    reader = next(encode_race_examples(examples, demo_tokenizer, 32, max_qa_length=12,
                                       batch_size=2).as_numpy_iterator())
    module = MultipleChoiceServing(get_task("race").build_model(micro_config), demo_tokenizer,
                                   32, 12)
    served = module.features(tf.constant([article] * 2), tf.constant(questions),
                             tf.constant(options))
    for k in ("input_ids", "attention_mask", "token_type_ids"):
        np.testing.assert_array_equal(served[k].numpy(), reader[k])
