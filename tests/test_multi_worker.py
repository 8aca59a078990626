"""What a multi-host (pod) run relies on, checked with real `--strategy=multi_worker` worker
processes on localhost (TF_CONFIG, free ports, one TMPDIR per worker):

- each worker's input pipeline reads a disjoint part of the data and together they read all of it;
- only the chief writes into model_dir, and no worker leaves files behind anywhere else;
- `kill -9` of a worker mid-run, then restarting both, resumes from the last checkpoint and ends
  with the loss and weights of an uninterrupted run;
- finetune.py trains and evaluates with two workers, the chief alone writing the results.

A survivor whose peer died may hang in a collective: every wait has a timeout and every process is
SIGKILLed in `finally` (tests/multi_worker_util.py).
"""

import json
import os
import re
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests.multi_worker_input_driver import example_key, first_epoch, unmasked_input
from tests.multi_worker_util import Cluster, python, wait_for

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_CORPUS = os.path.join(REPO, "data", "demo_corpus.txt")
DEMO_VOCAB = os.path.join(REPO, "data", "demo_vocab.txt")


def make_records(folder, num_shards: int) -> str:
    """Pretraining records of the shipped demo corpus (seq 64, ~126 examples); returns the glob."""
    from funnel_tf.text import pretraining

    pretraining.create_pretraining_data([DEMO_CORPUS], str(folder), DEMO_VOCAB, seq_len=64,
                                        num_shards=num_shards, seed=0, progress=None)
    return os.path.join(str(folder), "*.tfrecord")


def all_examples(pattern: str) -> list:
    """Every example key in the records, read directly (no sharding, no shuffling)."""
    from funnel_tf.text import pretraining

    keys = []
    for f in sorted(tf.io.gfile.glob(pattern)):
        for rec in tf.data.TFRecordDataset(f):
            parsed = pretraining.parse_pretraining_batch(tf.expand_dims(rec, 0), 64, 0)
            keys.append(example_key(parsed["input_ids"][0].numpy()))
    return keys


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return make_records(tmp_path_factory.mktemp("records"), num_shards=4)


# ---------------------------------------------------------------------------------- input shards
@pytest.mark.parametrize("num_shards", [1, 3, 4])
def test_worker_input_shards_are_disjoint_and_cover_the_data(tmp_path, num_shards):
    """With the InputContext MultiWorkerMirroredStrategy gives 2 one-replica workers, one epoch of
    each worker's `PretrainingInput.dataset_fn` is a disjoint part of the records and the parts
    cover every example: file sharding (>= 2 files) and example sharding (1 file) alike."""
    pattern = make_records(tmp_path / "rec", num_shards)
    everything = all_examples(pattern)
    assert len(everything) > 100 and len(set(everything)) == len(everything)  # keys identify
    data = unmasked_input(pattern, DEMO_VOCAB)
    parts = [first_epoch(data.dataset_fn(tf.distribute.InputContext(
        num_input_pipelines=2, input_pipeline_id=i, num_replicas_in_sync=2))) for i in range(2)]
    assert all(parts) and not set(parts[0]) & set(parts[1])
    assert sorted(parts[0] + parts[1]) == sorted(everything)


def test_two_real_workers_read_disjoint_shards(tmp_path, records):
    """Smoke test of the real thing: two worker processes, strategy from TF_CONFIG; each gets its
    own pipeline id, its distributed batches come from its own shard, the shards partition the
    data; worker 0 is the chief."""
    out = tmp_path / "out"
    out.mkdir()
    with Cluster(python("-m", "tests.multi_worker_input_driver", records, DEMO_VOCAB, out),
                 tmp_path / "work") as cluster:
        cluster.wait(timeout=240)
    w = [json.loads((out / f"worker{i}.json").read_text()) for i in range(2)]
    assert [x["input_pipeline_id"] for x in w] == [0, 1]
    assert [x["is_chief"] for x in w] == [True, False]
    for x in w:
        assert (x["num_input_pipelines"], x["num_workers"], x["num_replicas"],
                x["per_replica_batch"]) == (2, 2, 2, 4)
        assert x["first_batch"] == x["epoch"][:4]  # what the strategy fed = the worker's shard
    assert not set(w[0]["epoch"]) & set(w[1]["epoch"])
    assert sorted(w[0]["epoch"] + w[1]["epoch"]) == sorted(all_examples(records))
