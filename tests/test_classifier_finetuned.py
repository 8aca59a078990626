"""A FunnelTextClassifier opened on what finetune.py writes (a run's best/ folder, or the run's
model_dir) keeps the task's label names, its pair flag and its sequence length (task.json)."""

import os

import numpy as np
import pytest
import tensorflow as tf

from funnel_tf import FunnelTextClassifier
from funnel_tf.config import load_config
from funnel_tf.resources import demo_vocab_path
from funnel_tf.tasks import get_task
from funnel_tf.tasks.defaults import Hparams
from funnel_tf.checkpoints.resolver import BEST_DIR
from funnel_tf.finetuning.runner import FinetuneRunner, RunConfig
from funnel_tf.text.wordpiece import WordpieceTokenizer


def _finetuned(tmp_path, task_name, seq_len=24):
    """best/ exactly as a finetuning run saves it (FinetuneRunner.save_model), without training."""
    tokenizer = WordpieceTokenizer(demo_vocab_path())
    config = load_config("tiny").replace(vocab_size=tokenizer.vocab_size, block_sizes=[1, 1], block_repeats=[1, 1],
                                         num_decoder_layers=1, d_model=16, n_head=2, d_head=8, d_inner=24)
    run = RunConfig(model_dir=str(tmp_path / task_name))
    runner = FinetuneRunner(get_task(task_name), Hparams(max_seq_length=seq_len, batch_size=4), config,
                            tokenizer, tf.distribute.get_strategy(), run)
    runner.build()
    runner.save_model(os.path.join(run.model_dir, BEST_DIR))
    return run.model_dir, runner


@pytest.mark.parametrize("task_name, names, pair", [
    ("mnli", ["contradiction", "entailment", "neutral"], True),
    ("sst-2", ["0", "1"], False),
    ("sts-b", None, True)])
def test_from_a_finetune_best_folder_keeps_labels_pair_and_length(tmp_path, task_name, names, pair):
    model_dir, runner = _finetuned(tmp_path, task_name)
    best = os.path.join(model_dir, BEST_DIR)
    for path in (best, model_dir):  # the run folder stands for its best/ model
        clf = FunnelTextClassifier.from_pretrained(path)
        assert clf.label_names == names and clf.pair is pair
        assert clf.num_classes == (1 if names is None else len(names))
        assert clf.tokenizer.sequence_length == 24
    features = clf.tokenizer(["a cold river"], ["the old bridge"])  # the run's own weights
    np.testing.assert_allclose(clf(features).numpy(), runner.model(features)["logits"].numpy(), atol=1e-6)
    if task_name == "mnli":  # explicit arguments still win (one task: the same code for all)
        explicit = FunnelTextClassifier.from_pretrained(best, pair=False, sequence_length=16)
        assert explicit.pair is False and explicit.tokenizer.sequence_length == 16
