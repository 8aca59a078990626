"""shared_tokenizer: runs in one process reuse the tokenizer of the same vocab file (and the
in-graph encoders traced for it); another file, changed bytes or other options give another."""

import numpy as np

from funnel_tf.text import packing, wordpiece
from funnel_tf.text.classification import TextExamples, encode_text_examples
from funnel_tf.text.wordpiece import shared_tokenizer
from tests.run_fixtures import DEMO_VOCAB


def _examples(n=8):
    return TextExamples(text_a=[f"the warm river {i}" for i in range(n)], text_b=None,
                        labels=np.arange(n) % 2, ids=[str(i) for i in range(n)], label_names=None)


def _first_batch(tokenizer):
    ds = encode_text_examples(_examples(), tokenizer, 16, batch_size=4)
    return next(iter(ds))["input_ids"].numpy()


def test_same_file_same_tokenizer_and_no_second_trace(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_bytes(open(DEMO_VOCAB, "rb").read())
    first = shared_tokenizer(str(vocab))
    ids = _first_batch(first)
    encoder = next(iter(packing._TRACED[first].values()))
    traces = encoder.experimental_get_tracing_count()

    again = shared_tokenizer(str(vocab))
    assert again is first
    np.testing.assert_array_equal(_first_batch(again), ids)
    assert encoder.experimental_get_tracing_count() == traces  # the second run traced nothing
    assert shared_tokenizer(str(vocab), lower_case=False) is not first


def test_changed_bytes_or_another_path_give_another_tokenizer(tmp_path):
    vocab = tmp_path / "vocab.txt"
    tokens = open(DEMO_VOCAB, encoding="utf-8").read().splitlines()
    vocab.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    first = shared_tokenizer(str(vocab))
    copy = tmp_path / "copy.txt"
    copy.write_bytes(vocab.read_bytes())
    assert shared_tokenizer(str(copy)) is not first       # its own path (errors, exports name it)

    vocab.write_text("\n".join(tokens + ["zzzq"]) + "\n", encoding="utf-8")  # the file changed
    changed = shared_tokenizer(str(vocab))
    assert changed is not first and changed.vocab_size == first.vocab_size + 1
    assert len(wordpiece._SHARED) <= wordpiece._SHARED_KEPT
