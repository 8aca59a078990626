"""WordpieceTokenizer: BERT-uncased behaviour, offsets, graph safety, and the HuggingFace parity gate."""

import glob
import os
import sys

import numpy as np
import pytest
import tensorflow as tf

from funnel_tf.text.wordpiece import BERT_MAX_CHARS_PER_WORD, WordpieceTokenizer, load_vocab, special_ids


@pytest.fixture(scope="module")
def tok(bert_vocab):
    return WordpieceTokenizer(str(bert_vocab))


def _hf_slow_tokenizer(vocab_path, max_chars=100):
    """HuggingFace's pure-Python BERT tokenizer (v5: BertTokenizerLegacy; v4: BertTokenizer)."""
    try:
        import transformers  # noqa: F401
    except Exception as e:  # pragma: no cover - depends on the environment
        pytest.skip(f"transformers not importable ({type(e).__name__}: {e}); parity gate needs it")
    try:
        from transformers.models.bert import BertTokenizerLegacy as Slow
    except ImportError:
        from transformers import BertTokenizer as Slow
    hf = Slow(str(vocab_path), do_lower_case=True)
    # HF's default word limit is 100 chars (ours too); BERT's original FullTokenizer used 200.
    hf.wordpiece_tokenizer.max_input_chars_per_word = max_chars
    return hf


# --------------------------------------------------------------------------------- behaviour
def test_special_ids_follow_bert_layout(tok):
    assert tok.vocab_size == 30522
    assert special_ids(tok) == {"pad": 0, "unk": 100, "cls": 101, "sep": 102, "mask": 103}


def test_known_bert_ids(tok):
    assert tok.encode("Hello world!") == [7592, 2088, 999]
    assert tok.tokens("unaffable") == ["una", "##ffa", "##ble"]
    # Accents stripped after NFD, punctuation split, ASCII symbols count as punctuation.
    assert tok.tokens("Héllo, Wörld $5^2") == ["hello", ",", "world", "$", "5", "^", "2"]


def test_bert_normalisation_edge_cases(tok):
    # Control / format chars are deleted (joining the word), not turned into spaces.
    assert tok.tokens("co\u00adoperate") == tok.tokens("cooperate")
    assert tok.tokens("a\u200bb") == ["ab"]
    # No NFKC: ellipsis, fractions and sharp s stay themselves (tf-text's normaliser maps them).
    assert tok.tokens("wait… ½ straße") == ["wait", "…", "½", "st", "##raße"]
    # CJK ideographs are words of their own; the Unicode line separator splits words.
    assert tok.tokens("中文x") == ["中", "文", "x"]
    assert tok.tokens("a\u2028b") == ["a", "b"]
    # Python's Final_Sigma rule: a word-final capital sigma lowercases to ς.
    assert tok.id_to_token(tok.encode("ΟΔΟΣ")[-1]).endswith("ς")
    assert tok.tokens("") == [] and tok.tokens(" \t\n ") == []


def test_over_long_words_become_unk(tok, tmp_path):
    # HF's limit by default: 100 characters (accented / multi-byte characters count once).
    assert tok.max_chars_per_word == 100
    assert tok.encode("x" * 101) == [tok.unk_id]
    assert tok.unk_id not in tok.encode("x" * 100)
    assert tok.encode("é" * 101) == [tok.unk_id] and tok.unk_id not in tok.encode("é" * 100)
    # The options on a small vocab (the limit does not depend on it; BERT's tables take ~0.3 s
    # a tokenizer to build).
    small = tmp_path / "vocab.txt"
    small.write_text("\n".join(["[UNK]", "[CLS]", "[SEP]", "x", "##x", "abc", "##de"]) + "\n")
    # BERT's original 200 as an option.
    bert = WordpieceTokenizer(str(small), max_chars_per_word=BERT_MAX_CHARS_PER_WORD)
    assert bert.encode("x" * 201) == [bert.unk_id]
    assert bert.encode("x" * 200) == [3] + [4] * 199  # "x" "##x"...: no [UNK]
    short = WordpieceTokenizer(str(small), max_chars_per_word=5)
    assert short.encode("abcdef abcde") == [short.unk_id, short.token_to_id("abc"),
                                            short.token_to_id("##de")] == [0, 5, 6]


def test_offsets_point_into_the_original_bytes(tok):
    texts = ["Héllo, wörld! unaffable", "", "\u200b I\u0301ts 中文", "x" * 250 + " ok"]
    ids, starts, ends = tok.tokenize_with_offsets(tf.constant(texts))
    assert ids.dtype == tf.int32 and starts.dtype == tf.int64
    spans = []
    for text, i, s, e in zip(texts, ids.to_list(), starts.to_list(), ends.to_list()):
        b = text.encode("utf-8")
        spans.append([(tok.id_to_token(t), b[a:z].decode("utf-8")) for t, a, z in zip(i, s, e)])
    assert spans[0] == [("hello", "Héllo"), (",", ","), ("world", "wörld"), ("!", "!"),
                        ("una", "una"), ("##ffa", "ffa"), ("##ble", "ble")]
    assert spans[1] == []
    assert spans[2] == [("its", "I\u0301ts"), ("中", "中"), ("文", "文")]
    assert spans[3] == [("[UNK]", "x" * 250), ("ok", "ok")]
    # Same ids with and without offsets.
    assert tok.tokenize(tf.constant(texts)).to_list() == ids.to_list()


def test_runs_in_tf_data_and_tf_function(tok):
    texts = ["The quick brown fox.", "Jumps over the lazy dog!"]
    eager = tok.tokenize(tf.constant(texts)).to_list()

    ds = tf.data.Dataset.from_tensor_slices(texts).batch(2).map(tok.tokenize)
    assert next(iter(ds)).to_list() == eager

    fn = tf.function(tok.tokenize, input_signature=[tf.TensorSpec([None], tf.string)])
    assert fn(tf.constant(texts)).to_list() == eager
    assert tok.tokenize(tf.constant(texts[0])).numpy().tolist() == eager[0]  # scalar input


def test_saved_model_round_trip(tok, tmp_path):
    class Export(tf.Module):
        def __init__(self, t):
            super().__init__()
            self.t = t

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def __call__(self, texts):
            return self.t.tokenize(texts).to_tensor(default_value=-1)

    tf.saved_model.save(Export(tok), str(tmp_path / "tok"))
    loaded = tf.saved_model.load(str(tmp_path / "tok"))
    texts = tf.constant(["Straße … ½ ΟΔΟΣ", "hello"])
    np.testing.assert_array_equal(loaded(texts).numpy(),
                                  tok.tokenize(texts).to_tensor(default_value=-1).numpy())


def test_original_funnel_special_names(tmp_path):
    vocab = ["<pad>", "<unk>", "<cls>", "<sep>", "<mask>", "hello", "world", "##s", ","]
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    t = WordpieceTokenizer(str(path))
    assert (t.pad_id, t.unk_id, t.cls_id, t.sep_id, t.mask_id) == (0, 1, 2, 3, 4)
    assert t.tokens("Hello, worlds zzz") == ["hello", ",", "world", "##s", "<unk>"]


def test_bad_vocab_files_name_file_and_line(tmp_path):
    dup = tmp_path / "dup.txt"
    dup.write_text("[PAD]\nhello\nhello\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"dup.txt:3: duplicate"):
        load_vocab(str(dup))
    nospecial = tmp_path / "nospecial.txt"
    nospecial.write_text("[PAD]\n[UNK]\n[CLS]\nhello\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"nospecial.txt.*\[SEP\]"):
        WordpieceTokenizer(str(nospecial))
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"[PAD]\n\xff\xfe\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: vocab line is not UTF-8"):
        load_vocab(str(bad))


# ------------------------------------------------------------------------------ parity gate
_GLUE_TEXT_COLUMNS = {"sentence", "sentence1", "sentence2", "question", "question1", "question2",
                      "#1 String", "#2 String"}


def glue_sentences(shared_data):
    """Every text field of every GLUE TSV in shared data (CoLA: headerless, column 3)."""
    out = []
    for path in sorted(glob.glob(str(shared_data / "glue" / "*" / "*.tsv"))):
        with open(path, encoding="utf-8-sig") as f:
            lines = f.read().split("\n")
        if os.sep + "CoLA" + os.sep in path:
            out += [line.split("\t")[3] for line in lines if line]
            continue
        header = lines[0].split("\t")
        cols = [i for i, h in enumerate(header) if h in _GLUE_TEXT_COLUMNS]
        for line in lines[1:]:
            if line:
                fields = line.split("\t")
                out += [fields[i] for i in cols if i < len(fields)]
    return out


def corpus_lines(shared_data):
    """Non-blank lines of every corpus file (UTF-8, else Latin-1 as PROVENANCE.md notes)."""
    out = []
    for path in sorted(glob.glob(str(shared_data / "corpus" / "*" / "*"))):
        if os.path.basename(path).startswith("README"):
            continue
        with open(path, "rb") as f:
            raw = f.read()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        out += [line for line in text.splitlines() if line.strip()]
    return out


def _compare(tok, hf, texts, batch=4096):
    ours = []
    for i in range(0, len(texts), batch):
        ours += tok.tokenize(tf.constant(texts[i:i + batch])).to_list()
    mismatches = []
    for text, mine in zip(texts, ours):
        theirs = hf.convert_tokens_to_ids(hf.tokenize(text))
        if theirs != mine:
            mismatches.append((text, hf.convert_ids_to_tokens(theirs), tok.id_to_token(mine)))
    return mismatches


def _report(name, texts, mismatches):
    print(f"\nparity[{name}]: {len(texts)} sequences compared, {len(mismatches)} mismatches",
          file=sys.stderr)
    assert not mismatches, f"{len(mismatches)} mismatches, first: {mismatches[0]!r}"


@pytest.mark.reference
def test_parity_with_hf_sample(tok, bert_vocab, shared_data):
    """Default run: a spread-out sample of GLUE sentences and corpus lines (~4k sequences)."""
    hf = _hf_slow_tokenizer(bert_vocab)
    glue = glue_sentences(shared_data)
    corpus = corpus_lines(shared_data)
    texts = glue[::50] + corpus[::60]
    _report("sample", texts, _compare(tok, hf, texts))


def _hf_fast_tokenizer(vocab_path, max_chars=100):
    try:
        from transformers import BertTokenizerFast
    except Exception as e:  # pragma: no cover - depends on the environment
        pytest.skip(f"transformers not importable ({type(e).__name__}: {e})")
    import inspect
    if "vocab_file" in inspect.signature(BertTokenizerFast.__init__).parameters:  # transformers 4.x
        hf = BertTokenizerFast(vocab_file=str(vocab_path), do_lower_case=True)
    else:  # 5.x takes the vocab mapping (vocab_file would be ignored silently)
        with open(vocab_path, encoding="utf-8") as f:
            hf = BertTokenizerFast(vocab={t.rstrip("\n"): i for i, t in enumerate(f)}, do_lower_case=True)
    hf.backend_tokenizer.model.max_input_chars_per_word = max_chars
    return hf


@pytest.mark.reference
def test_offsets_match_hf_fast_offset_mapping(tok, bert_vocab, shared_data):
    """Our byte offsets, converted to characters, equal HF fast's offset_mapping (SQuAD relies on it)."""
    hf = _hf_fast_tokenizer(bert_vocab)
    # (No word-final capital sigma here: HF's Rust normaliser lowercases it to σ, while BERT's Python
    # reference, and we, follow str.lower()'s Final_Sigma rule and give ς.)
    texts = glue_sentences(shared_data)[::40] + corpus_lines(shared_data)[::50] + [
        "Ca\u0301fe\u0301 \u200bnaïve ΟΔΟΣΟ 中文 " + "y" * 230 + " " + "z" * 150 + " end"]
    ids, starts, ends = tok.tokenize_with_offsets(tf.constant(texts))
    enc = hf(texts, add_special_tokens=False, return_offsets_mapping=True)
    bad = []
    for text, i, s, e, h_ids, h_off in zip(texts, ids.to_list(), starts.to_list(), ends.to_list(),
                                           enc["input_ids"], enc["offset_mapping"]):
        b = text.encode("utf-8")
        chars = [(len(b[:x].decode("utf-8")), len(b[:y].decode("utf-8"))) for x, y in zip(s, e)]
        if i != h_ids or chars != [tuple(o) for o in h_off]:
            bad.append(text)
    _report("offsets", texts, bad)


@pytest.mark.reference
def test_parity_with_hf_every_bmp_code_point(tok, bert_vocab):
    """Every BMP code point inside and around words: cleaning, casing, accents, punctuation, CJK."""
    hf = _hf_slow_tokenizer(bert_vocab)
    texts = [f"X{chr(c)}y{chr(c)}" for c in range(0x10000) if not 0xD800 <= c <= 0xDFFF]
    _report("bmp", texts, _compare(tok, hf, texts, batch=16384))


@pytest.mark.slow
@pytest.mark.reference
@pytest.mark.parametrize("source", ["glue", "corpus", "all_code_points"])
def test_parity_with_hf_full(tok, bert_vocab, shared_data, source):
    """Everything: every GLUE sentence, every corpus line, every Unicode scalar in 3 contexts."""
    hf = _hf_slow_tokenizer(bert_vocab)
    if source == "glue":
        texts = glue_sentences(shared_data)
    elif source == "corpus":
        texts = corpus_lines(shared_data)
    else:
        cps = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
        texts = ([f"a{c}b" for c in cps] + [f"ΑΣ{c}" for c in cps] + [f"Σ{c}Σ{c}Σ" for c in cps])
    _report(source, texts, _compare(tok, hf, texts, batch=16384))


# BERT's own unit-test vocab (tokenization_test.py): no [PAD], no [MASK].
BERT_TEST_VOCAB = ["[UNK]", "[CLS]", "[SEP]", "want", "##want", "##ed", "wa", "un", "runn",
                   "##ing", ","]


def test_a_vocab_needs_only_what_its_use_needs(tmp_path):
    from funnel_tf.text.vocab import VocabError

    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(BERT_TEST_VOCAB) + "\n")
    wp = WordpieceTokenizer(str(path))  # tokenizing needs [UNK] [CLS] [SEP] only
    assert wp.tokenize(tf.constant(["unwanted running"])).to_list() == [[7, 4, 5, 8, 9]]
    assert special_ids(wp) == {"unk": 0, "cls": 1, "sep": 2}
    with pytest.raises(VocabError, match=r"no \[PAD\] .*needed for padding sequences to a fixed"):
        wp.pad_id
    with pytest.raises(VocabError, match=r"no \[MASK\] .*needed for masked-LM pretraining"):
        wp.mask_id

    from funnel_tf.tokenizer import FunnelTokenizer

    tok = FunnelTokenizer(str(path), sequence_length=8)
    assert tok.decode(wp.tokenize(tf.constant(["unwanted"])).to_list()[0]) == "unwanted"
    with pytest.raises(VocabError, match=r"\[PAD\]"):  # padding to a length is the use needing it
        tok(["unwanted running"])

    path.write_text("\n".join(t for t in BERT_TEST_VOCAB if t != "[SEP]") + "\n")
    with pytest.raises(VocabError, match=r"no \[SEP\] \(or <sep>\) token, needed for tokenizing"):
        WordpieceTokenizer(str(path))


@pytest.mark.reference
def test_parity_is_with_hf_slow_not_hf_fast(tok, bert_vocab):
    """What the README claims, precisely: the same ids as HF's Python (slow) tokenizer, and not as
    its Rust (fast) one on an unassigned code point, a word-final capital sigma."""
    slow, fast = _hf_slow_tokenizer(bert_vocab), _hf_fast_tokenizer(bert_vocab)
    for text in ["a\u0378b stone", "ΟΔΟΣ stone"]:
        ours = tok.tokenize(tf.constant([text])).to_list()[0]
        assert ours == slow.encode(text, add_special_tokens=False), text
        assert ours != fast.encode(text, add_special_tokens=False), text
