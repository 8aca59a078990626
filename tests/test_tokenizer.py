"""FunnelTokenizer: HF FunnelTokenizer parity on real text and pairs, tf.data, from_pretrained, errors."""

import csv
import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from funnel_tf.tokenizer import FunnelTokenizer, TokenizerError

# Hand-picked hard cases: accents, CJK, punctuation, symbols, control / zero-width chars, and words
# of 100, 101 and 150 characters (HF's limit: over 100 characters is [UNK]).
HARD = ["Héllo, Wörld! Ça va? naïve café résumé", "中文字符 and 日本語 mixed 한국어", "$5^2 = 25… ½ straße",
        "co\u00adoperate a\u200bb tab\there", "x" * 100, "x" * 101, "y" * 150 + " end", "é" * 101,
        "(parenthesised) [bracketed] {braced} \"quoted\" 'single' — dash – en-dash", ""]


def _hf_funnel_tokenizer(vocab):
    try:
        from transformers import FunnelTokenizer as HFFunnelTokenizer
    except Exception as e:  # pragma: no cover - depends on the environment
        pytest.skip(f"transformers not importable ({type(e).__name__}: {e})")
    # The BERT vocab names its specials [CLS] etc. (the Funnel hub vocab uses <cls>).
    specials = dict(unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]",
                    mask_token="[MASK]")
    try:
        return HFFunnelTokenizer(vocab=str(vocab), **specials)
    except TypeError:  # transformers 4.x: the vocab file is `vocab_file`
        return HFFunnelTokenizer(vocab_file=str(vocab), **specials)


def _real_text(shared_data, n=300):
    """GLUE sentence pairs (RTE, MRPC, STS-B dev) and corpus lines (Gutenberg, WikiText)."""
    pairs = []
    for task, a, b in (("RTE", "sentence1", "sentence2"), ("MRPC", "#1 String", "#2 String"),
                       ("STS-B", "sentence1", "sentence2")):
        path = shared_data / "glue" / task / "dev.tsv"
        if path.exists():
            with open(path, encoding="utf-8-sig") as f:
                rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
            pairs += [(r[a], r[b]) for r in rows[: n // 3]]
    lines = []
    for path in sorted(glob.glob(str(shared_data / "corpus" / "*" / "*")))[:40]:
        if os.path.basename(path).startswith("README"):
            continue
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", errors="replace")
        lines += [ln for ln in text.splitlines() if ln.strip()][:8]
    # HF's Rust normaliser lowercases a word-final capital sigma to σ; BERT's Python reference (and
    # we) give ς. Texts with a capital sigma are compared in tests/text/test_wordpiece.py instead.
    return [p for p in pairs if "Σ" not in p[0] + p[1]], [ln for ln in lines if "Σ" not in ln]


@pytest.fixture(scope="module")
def tokenizer(bert_vocab):
    return FunnelTokenizer(str(bert_vocab))


def _assert_same(ours, theirs, texts):
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        got = ours[key].numpy()
        want = np.asarray(theirs[key])
        bad = np.nonzero((got != want).any(axis=1))[0]
        assert not len(bad), f"{key} differs for {len(bad)} texts, first: {texts[bad[0]]!r}"


@pytest.mark.reference
@pytest.mark.parametrize("length", [16, 128])
def test_matches_hf_funnel_tokenizer(tokenizer, bert_vocab, shared_data, length):
    """Singles and pairs, long enough to truncate (16) and not (128), token for token."""
    hf = _hf_funnel_tokenizer(bert_vocab)
    pairs, lines = _real_text(shared_data)
    singles = lines + [a for a, _ in pairs] + HARD
    kw = dict(max_length=length, padding="max_length", truncation=True, return_token_type_ids=True)
    _assert_same(tokenizer(singles, sequence_length=length), hf(singles, **kw), singles)
    a = [p[0] for p in pairs] + HARD
    b = [p[1] for p in pairs] + HARD[::-1]
    _assert_same(tokenizer(a, b, sequence_length=length), hf(a, b, **kw), list(zip(a, b)))


@pytest.mark.reference
def test_pair_truncation_lengths_match_hf_exhaustively(tokenizer, bert_vocab):
    """Every pair of lengths 0..11 under budgets 2..9: HF's rule by default; BERT's pop loop as an option."""
    hf = _hf_funnel_tokenizer(bert_vocab)
    bert = FunnelTokenizer(tokenizer.vocab_path, truncation="longest_first")
    a_id, b_id = tokenizer.convert_tokens_to_ids(["a", "b"])
    for length in (5, 6, 7, 8, 9, 12):
        cases = [(n1, n2) for n1 in range(12) for n2 in range(12)]
        a = [" ".join(["a"] * n1) for n1, _ in cases]
        b = [" ".join(["b"] * n2) for _, n2 in cases]
        theirs = hf(a, b, max_length=length, truncation=True)["input_ids"]  # batched: "" is a real pair
        ours = tokenizer(a, b, sequence_length=length)["input_ids"].numpy()
        pops = bert(a, b, sequence_length=length)["input_ids"].numpy()
        for (n1, n2), t, o, p in zip(cases, theirs, ours, pops):
            want = (t.count(a_id), t.count(b_id))
            assert ((o == a_id).sum(), (o == b_id).sum()) == want, (n1, n2, length)
            # BERT's rule: pop from the longer segment, B on ties.
            k1, k2 = n1, n2
            while k1 + k2 > length - 3:
                if k1 > k2:
                    k1 -= 1
                else:
                    k2 -= 1
            assert ((p == a_id).sum(), (p == b_id).sum()) == (k1, k2), (n1, n2, length)


def test_layout_cls_type_two_and_long_words(tokenizer):
    out = tokenizer(["Hello world!", "x" * 101 + " " + "x" * 100], pair_texts=["Hi", "ok"],
                    sequence_length=10)
    assert out["input_ids"].dtype == tf.int32 and out["input_ids"].shape == (2, 10)
    assert out["input_ids"].numpy()[0].tolist() == [101, 7592, 2088, 999, 102, 7632, 102, 0, 0, 0]
    assert out["token_type_ids"].numpy()[0].tolist() == [2, 0, 0, 0, 0, 1, 1, 0, 0, 0]
    assert out["attention_mask"].numpy()[0].tolist() == [1] * 7 + [0] * 3
    assert tokenizer.decode(out["input_ids"][0]) == "hello world ! hi"  # specials and padding dropped
    row = tokenizer.convert_ids_to_tokens(out["input_ids"].numpy()[1][:3].tolist())
    assert row[1] == "[UNK]" and row[2] == "xx"  # 101 chars -> [UNK]; 100 chars -> "xx" "##xx" ...
    assert FunnelTokenizer(tokenizer.vocab_path, max_chars_per_word=200).tokenize("x" * 150).shape[0] > 1


def test_one_string_gives_one_row_and_tf_data_map(tokenizer):
    texts = ["The quick brown fox.", "Jumps over the lazy dog!", "Ünïcödé 中文"]
    eager = tokenizer(texts, sequence_length=16)
    one = tokenizer(texts[0], sequence_length=16)
    assert one["input_ids"].shape == (16,)
    np.testing.assert_array_equal(one["input_ids"].numpy(), eager["input_ids"].numpy()[0])

    assert tokenizer([], sequence_length=16)["input_ids"].shape == (0, 16)
    np.testing.assert_array_equal(tokenizer(np.array(texts), sequence_length=16)["input_ids"].numpy(),
                                  eager["input_ids"].numpy())

    # In tf.data, on one string per element (then batched) and on a batch of strings (default
    # sequence_length): one pipeline, one iterator (each costs ~0.5 s with the BERT tables).
    unbatched = tf.data.Dataset.from_tensor_slices((texts, [0, 1, 0]))
    ds = (unbatched.map(lambda t, y: (tokenizer(t, sequence_length=16), y, t)).batch(3)
          .map(lambda one, y, t: (one, y, tokenizer(t))))
    rows = list(ds)
    assert len(rows) == 1
    np.testing.assert_array_equal(rows[0][0]["input_ids"].numpy(), eager["input_ids"].numpy())
    got = rows[0][2]
    np.testing.assert_array_equal(got["input_ids"].numpy()[:, :16], eager["input_ids"].numpy())
    assert got["input_ids"].shape == (3, tokenizer.sequence_length)


def test_from_pretrained_finds_the_vocab_in_every_folder_kind(tmp_path):
    # The demo vocab (919 tokens): finding and reading a folder does not depend on the vocab, and
    # each load builds its tables (BERT's 30522 tokens: ~0.5 s a load).
    from tests.run_fixtures import DEMO_VOCAB

    tokenizer = FunnelTokenizer(DEMO_VOCAB)
    vocab = open(tokenizer.vocab_path, encoding="utf-8").read()
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "vocab.txt").write_text(vocab, encoding="utf-8")
    (tmp_path / "hf" / "tokenizer_config.json").write_text('{"do_lower_case": false}')
    (tmp_path / "original").mkdir()
    (tmp_path / "original" / "vocab.uncased.txt").write_text(vocab, encoding="utf-8")
    hf = FunnelTokenizer.from_pretrained(str(tmp_path / "hf"))
    assert not hf.lower_case  # follows tokenizer_config.json
    original = FunnelTokenizer.from_pretrained(str(tmp_path / "original"), sequence_length=64)
    assert original.lower_case and original.sequence_length == 64
    saved = original.save_pretrained(str(tmp_path / "ours"))
    again = FunnelTokenizer.from_pretrained(str(tmp_path / "ours"))
    assert saved.endswith("vocab.txt") and again.vocab_size == tokenizer.vocab_size == 919
    ids = tokenizer(["Héllo, the river"])["input_ids"].numpy()
    assert tokenizer.unk_id not in ids[0]  # "he" "##l" "##l" "##o" "," "the" "river"
    np.testing.assert_array_equal(again(["Héllo, the river"])["input_ids"].numpy(), ids)


@pytest.mark.reference
def test_from_pretrained_reads_an_hf_tokenizer_json_without_vocab_txt(tokenizer, bert_vocab, tmp_path):
    hf = _hf_funnel_tokenizer(bert_vocab)
    hf.save_pretrained(str(tmp_path))
    for name in ("vocab.txt", "vocab.uncased.txt"):
        if (tmp_path / name).exists():
            (tmp_path / name).unlink()
    assert (tmp_path / "tokenizer.json").exists()
    ours = FunnelTokenizer.from_pretrained(str(tmp_path))
    assert ours.vocab_size == tokenizer.vocab_size and ours.wordpiece.vocab == tokenizer.wordpiece.vocab
    text = ["Héllo, wörld! 中文"]
    np.testing.assert_array_equal(ours(text)["input_ids"].numpy(), tokenizer(text)["input_ids"].numpy())
    (tmp_path / "tokenizer.json").write_text('{"model": {"type": "BPE", "vocab": {}}}')
    with pytest.raises(TokenizerError, match="a BPE tokenizer, not WordPiece"):
        FunnelTokenizer.from_pretrained(str(tmp_path))


@pytest.mark.reference
def test_saved_folder_loads_in_hf(tokenizer, bert_vocab, tmp_path):
    """save_pretrained writes what HF's FunnelTokenizer.from_pretrained reads (vocab + specials)."""
    _hf_funnel_tokenizer(bert_vocab)  # skips without transformers
    from transformers import FunnelTokenizer as HFFunnelTokenizer

    tokenizer.save_pretrained(str(tmp_path))
    hf = HFFunnelTokenizer.from_pretrained(str(tmp_path))
    texts = ["Héllo, wörld!", "A second, longer sentence."]
    theirs = hf(texts, max_length=16, padding="max_length", truncation=True, return_token_type_ids=True)
    _assert_same(tokenizer(texts, sequence_length=16), theirs, texts)


def test_user_errors_say_what_to_do(tokenizer, tmp_path):
    with pytest.raises(TokenizerError, match=r"no vocab in this folder \(looked for vocab.txt"):
        FunnelTokenizer.from_pretrained(str(tmp_path))
    with pytest.raises(TokenizerError, match="no such file or directory"):
        FunnelTokenizer.from_pretrained(str(tmp_path / "missing"))
    (tmp_path / "vocab.txt").write_text("[PAD]\nhello\nhello\n", encoding="utf-8")
    with pytest.raises(TokenizerError, match=r"cannot read the vocab: .*vocab.txt:3: duplicate"):
        FunnelTokenizer.from_pretrained(str(tmp_path))
    with pytest.raises(TokenizerError, match="leaves no room"):
        tokenizer(["a"], ["b"], sequence_length=3)
    with pytest.raises(TokenizerError, match="sequence_length must be an int"):
        tokenizer(["a"], sequence_length=12.5)
    with pytest.raises(TokenizerError, match="same length"):
        tokenizer(["a", "b"], ["c"])
    with pytest.raises(TokenizerError, match=r"pair_texts must be strings.*\(text, label\)"):
        tokenizer(tf.constant(["a"]), tf.constant([1]))
    with pytest.raises(TokenizerError, match="must be strings"):
        tokenizer(["a", 3])
    with pytest.raises(TokenizerError, match="truncation must be one of"):
        FunnelTokenizer(tokenizer.vocab_path, truncation="longest")
