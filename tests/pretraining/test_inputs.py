"""Raw-text pretraining input: non-UTF-8 lines fail with file and line, or are skipped on request."""

import pathlib

import pytest

from funnel_tf.config import load_config
from funnel_tf.pretraining import inputs

REPO = pathlib.Path(__file__).resolve().parents[2]
DEMO_VOCAB = str(REPO / "data" / "demo_vocab.txt")
DEMO_CORPUS = REPO / "data" / "demo_corpus.txt"


def _corpus_with_latin1_line(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_bytes(b"caf\xe9 au lait was cold.\n" + DEMO_CORPUS.read_bytes())
    return str(path)


def _build(tmp_path, text, **kwargs):
    cfg = load_config("tiny").replace(vocab_size=919)
    return inputs.build_pretraining_input([text], 32, 4, cfg, vocab=DEMO_VOCAB, data_format="text",
                                          work_dir=str(tmp_path / "work"), **kwargs)


def test_non_utf8_line_names_file_and_line(tmp_path):
    text = _corpus_with_latin1_line(tmp_path)
    with pytest.raises(ValueError, match=r"corpus\.txt:1: line is not valid UTF-8"):
        _build(tmp_path, text)


def test_non_utf8_line_skipped_on_request(tmp_path):
    text = _corpus_with_latin1_line(tmp_path)
    data = _build(tmp_path, text, skip_undecodable_lines=True)
    assert data.tokenizer.vocab_size == 919
    manifest = inputs.read_manifest(data.files)
    assert manifest["num_examples"] > 0


def test_dataset_fn_starts_at_a_batch_with_the_masks_of_the_uninterrupted_stream(tmp_path, tiny_config):
    """The loop's dataset_fn of the task's input (`task_dataset_fn(task, spec)`) called with
    `start_batch=k` (what a replayed resume calls) yields the batches k, k+1, ... of
    `dataset_fn(ctx)`, masks included, several epochs in."""
    import numpy as np
    import tensorflow as tf

    from funnel_tf.engine.inputs import task_dataset_fn
    from funnel_tf.tasks.mlm import MaskedLMTask
    from funnel_tf.text import pretraining

    records = tmp_path / "records"
    pretraining.create_pretraining_data([str(DEMO_CORPUS)], str(records), DEMO_VOCAB, seq_len=32,
                                        num_shards=2, seed=3, max_examples=40, progress=None)
    cfg = tiny_config.replace(vocab_size=919)
    data = inputs.build_pretraining_input([str(records / "*.tfrecord")], 32, 8, cfg, seed=5)
    ctx = tf.distribute.InputContext()

    def batches(ds, n):
        return [np.concatenate([b["input_ids"], b["masked_positions"]], 1) for b in ds.take(n)]

    dataset_fn = task_dataset_fn(MaskedLMTask(), data.spec)
    full = batches(dataset_fn(ctx), 14)  # 5 batches an epoch
    resumed = batches(dataset_fn(ctx, start_batch=11), 3)
    for i, (a, b) in enumerate(zip(resumed, full[11:])):
        np.testing.assert_array_equal(a, b, err_msg=f"batch {11 + i}")
