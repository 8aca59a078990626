"""Pretraining with its model_dir on a non-local filesystem (gs:// on pods; TF's in-memory ram://
stands in for it here), through the library entry point pretrain.py maps its flags onto: the
records of the raw-text corpus, checkpoints, progress and config land under ram://, and a second
call resumes from the ram:// checkpoint instead of starting again."""

import json
import os
import uuid

import pytest
import tensorflow as tf

from funnel_tf import storage
from funnel_tf.pretraining.args import PretrainArgs
from funnel_tf.pretraining.run import run_pretraining
from funnel_tf.engine.progress import read_metrics


@pytest.fixture
def ram_dir():
    root = f"ram://pretrain_{uuid.uuid4().hex}"
    yield f"{root}/run"
    storage.remove_tree(root)


@pytest.mark.slow  # two short runs, ~45 s CPU (tracing and record making dominate)
def test_pretraining_under_ram_writes_there_and_resumes(ram_dir):
    small = dict(model_dir=ram_dir, config_override=["d_model=32", "n_head=2", "d_head=16",
                                                     "d_inner=64", "block_sizes=[1,1,1]"],
                 seq_len=32, batch_size=4, steps_per_loop=2, log_every=2, save_every=2,
                 warmup_steps=1)
    first = run_pretraining(PretrainArgs(train_steps=4, **small))     # the shipped demo corpus
    assert first.step == 4 and not first.preempted
    assert tf.train.latest_checkpoint(f"{ram_dir}/checkpoints").endswith("ckpt-4")
    with tf.io.gfile.GFile(f"{ram_dir}/config.json") as f:
        assert json.loads(f.read())["d_model"] == 32
    assert [r["step"] for r in read_metrics(ram_dir)] == [2, 4]

    again = run_pretraining(PretrainArgs(train_steps=6, **small))
    assert again.step == 6 and again.checkpoint.endswith("ckpt-6")
    assert [r["step"] for r in read_metrics(ram_dir)] == [2, 4, 6]      # resumed at 4
    assert not tf.io.gfile.exists(os.path.join(ram_dir, "RUN_LOCK"))
