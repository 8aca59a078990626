"""Task plumbing: row ordering, the finetuning loss normalisation, file overrides, writes."""

import os

import numpy as np
import pytest
import tensorflow as tf

from funnel_tf.tasks import get_task
from funnel_tf.tasks.base import atomic_write_json, rows_by_example


def test_rows_by_example_orders_and_drops_padding():
    out = rows_by_example({"example_index": np.array([1, -1, 0, 2, -1]),
                           "x": np.array([10, 0, 20, 30, 0])}, 3)
    assert out["x"].tolist() == [20, 10, 30]
    with pytest.raises(RuntimeError, match="exactly once"):
        rows_by_example({"example_index": np.array([1, 1, 0])}, 3)
    with pytest.raises(RuntimeError, match="exactly once"):
        rows_by_example({"example_index": np.array([0, 1])}, 3)


def test_loss_is_the_weighted_mean_over_the_global_batch(micro_config):
    task = get_task("sst-2")
    objective = task.bind(micro_config)
    objective.build()
    assert objective.backbone is objective.model.funnel
    ids = tf.constant([[2, 5, 6, 3, 0, 0, 0, 0], [2, 7, 8, 3, 0, 0, 0, 0],
                       [2, 9, 3, 0, 0, 0, 0, 0]], tf.int32)
    features = {"input_ids": ids, "attention_mask": tf.cast(ids > 0, tf.int32),
                "token_type_ids": tf.zeros_like(ids), "label": tf.constant([0, 1, 1]),
                "example_weight": tf.constant([1.0, 1.0, 0.0])}
    per_example, _ = task.per_example_loss(objective.model, features, training=False)
    normalizers = objective.local_normalizers(features)
    assert float(normalizers["weight"]) == 2.0
    # As if another replica contributed 2 more examples: the loss is this replica's share.
    loss, stats = objective.loss_and_stats(features, {"weight": tf.constant(4.0)}, False, None)
    np.testing.assert_allclose(float(loss), float(per_example[:2].numpy().sum()) / 4, rtol=1e-6)
    assert float(stats["weight"]) == 2.0 and 0 <= float(stats["correct"]) <= 2
    assert set(objective.metrics) == {"loss", "accuracy"}


def test_file_overrides(tmp_path):
    (tmp_path / "my_dev.tsv").write_text("x")
    mnli = get_task("mnli", files={"dev": "my_dev.tsv", "test": "t.tsv"})
    assert set(mnli.files) == {"dev_matched", "test_matched"}
    assert mnli.override_path(str(tmp_path), "dev_matched") == str(tmp_path / "my_dev.tsv")
    assert mnli.override_path(str(tmp_path), "dev_mismatched") is None
    with pytest.raises(FileNotFoundError, match="t.tsv"):
        mnli.override_path(str(tmp_path), "test_matched")


def test_atomic_write_leaves_no_temp(tmp_path):
    path = str(tmp_path / "sub" / "r.json")
    atomic_write_json(path, {"b": 1, "a": [1, 2]})
    assert open(path).read().startswith('{\n  "a"')
    assert os.listdir(tmp_path / "sub") == ["r.json"]
