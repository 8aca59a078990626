"""Vocab learning: layouts, word splitting shared with the tokenizer, reproducible demo vocab."""

import pathlib

import pytest
import tensorflow as tf

from funnel_tf.text.vocab import build_vocab, count_words, reserved_tokens
from funnel_tf.text.wordpiece import WordpieceTokenizer

REPO = pathlib.Path(__file__).resolve().parents[2]
DEMO_CORPUS = REPO / "data" / "demo_corpus.txt"
DEMO_VOCAB = REPO / "data" / "demo_vocab.txt"


def test_reserved_layouts():
    bert = reserved_tokens("bert")
    assert len(bert) == 104 and bert[0] == "[PAD]" and bert[100:] == ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert reserved_tokens("compact") == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    with pytest.raises(ValueError, match="layout"):
        reserved_tokens("xlnet")


def test_words_are_counted_with_bert_normalisation(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("Café, CAFÉ… straße!\n\nnaïve 中文\n", encoding="utf-8")
    counts = count_words([str(f)])
    # Lowercased, accents stripped, punctuation and CJK split; no NFKC ("…" and "ß" kept).
    assert counts == {"cafe": 2, ",": 1, "…": 1, "straße": 1, "!": 1, "naive": 1, "中": 1, "文": 1}
    assert count_words([str(f)], lower_case=False)["CAFÉ"] == 1


def test_learned_vocab_covers_its_corpus(tmp_path):
    out = tmp_path / "vocab.txt"
    messages = []
    report = build_vocab([str(DEMO_CORPUS)], str(out), vocab_size=600, layout="compact", progress=messages.append)
    tok = WordpieceTokenizer(str(out))
    assert report["vocab_size"] == tok.vocab_size
    # On a corpus this small the learner's threshold search bottoms out above the target: say so.
    if tok.vocab_size > 600:
        assert any("above the target 600" in m for m in messages)
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 1, 2, 3, 4)
    assert all(t.startswith("##") or len(t) > 0 for t in tok.vocab)
    lines = [l for l in DEMO_CORPUS.read_text(encoding="utf-8").splitlines() if l.strip()]
    ids = tok.tokenize(tf.constant(lines)).flat_values.numpy()
    assert (ids == tok.unk_id).sum() == 0  # every character of the corpus is in the alphabet
    with pytest.raises(ValueError, match="no room"):
        build_vocab([str(DEMO_CORPUS)], str(out), vocab_size=5, layout="compact", progress=lambda m: None)


def test_demo_vocab_is_reproducible_from_the_demo_corpus(tmp_path):
    """data/demo_vocab.txt is exactly what `build-vocab --vocab_size 2000` (bert layout) writes."""
    out = tmp_path / "vocab.txt"
    build_vocab([str(DEMO_CORPUS)], str(out), vocab_size=2000, progress=lambda m: None)
    assert out.read_bytes() == DEMO_VOCAB.read_bytes()
    tok = WordpieceTokenizer(str(DEMO_VOCAB))
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 100, 101, 102, 103)
