"""BERT uncased WordPiece tokenization on tensorflow-text, graph-safe for tf.data and SavedModels.

The Funnel-Transformer checkpoints expect exactly the ids of BERT's uncased ``FullTokenizer``:
clean text (drop control / format / unassigned chars, map whitespace to spaces), space out CJK
ideographs, lowercase, NFD and strip accents (Mn), split punctuation, then greedy longest-match
WordPiece with ``##`` and ``[UNK]`` for words over 100 characters (HuggingFace's
``BertTokenizer`` / ``FunnelTokenizer`` limit; BERT's original ``FullTokenizer`` used 200, available
as ``max_chars_per_word=BERT_MAX_CHARS_PER_WORD``) or with no match.

tf-text's ``FastBertTokenizer`` / ``BertTokenizer`` are *not* exact here: their normaliser is ICU
NFKC-casefold, so e.g. "…" becomes "...", "½" becomes "1⁄2", "ß" becomes "ss", and control
characters become spaces instead of being removed. We therefore do BERT's character-level
normalisation ourselves, vectorised: every code point is classified and mapped through tables
computed once from Python's ``unicodedata`` (the same database BERT's Python tokenizer uses),
looked up in-graph (``searchsorted`` over class ranges + a static hash table), and only the
WordPiece step is tf-text's (``FastWordpieceTokenizer`` on pre-split words). Offsets come out
exactly because every normalised byte is traced back to the input character it came from.
``tests/text/test_wordpiece.py`` is the parity gate against HuggingFace's Python (slow)
``BertTokenizer`` / ``FunnelTokenizer``: the same ids, token for token (0 mismatches in 5,000 fuzz
strings). It is *not* HuggingFace's Rust (fast) tokenizer, the default ``AutoTokenizer`` /
``BertTokenizer`` of transformers 5, whose normaliser differs (948 of those 5,000 strings come out
differently: unassigned code points, some combining marks, the final sigma).

A vocab needs only what its use needs: [UNK], [CLS] and [SEP] (or <unk> <cls> <sep>) to tokenize;
[PAD] to pad to a fixed length; [MASK] for masked-LM pretraining. A missing one is a `VocabError`
naming the token and the use, raised when that use asks for it.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import re
import sys
import unicodedata
from typing import Iterable, Sequence, Union

import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

# Special tokens are looked up by name, so both BERT's vocab ("[PAD]") and the original Funnel
# release's renamed vocab ("<pad>") work without id conventions baked in.
_SPECIAL_NAMES = {
    "pad": ("[PAD]", "<pad>"),
    "unk": ("[UNK]", "<unk>"),
    "cls": ("[CLS]", "<cls>"),
    "sep": ("[SEP]", "<sep>"),
    "mask": ("[MASK]", "<mask>"),
}

# Needed by every use (WordPiece's unknown token; [CLS] A [SEP] B [SEP]); the others only by the
# use named here, and asked for (pad_id / mask_id) only there.
_ALWAYS_NEEDED = ("unk", "cls", "sep")
_NEEDED_FOR = {"pad": "padding sequences to a fixed length",
               "mask": "masked-LM pretraining (MLM / ELECTRA masking)"}

# Longest word (in characters) WordPiece splits; longer words become [UNK]. HF's tokenizers use
# 100 (the default here, for token-for-token parity); BERT's original FullTokenizer used 200.
HF_MAX_CHARS_PER_WORD = 100
BERT_MAX_CHARS_PER_WORD = 200

# Character classes of BERT's BasicTokenizer, decided on the *input* character.
_NORMAL, _DROP, _SPACE, _CJK = 0, 1, 2, 3
_CLASS_BITS = 3
_CASED, _CASE_IGNORABLE = 4, 8  # flag bits for Python's Final_Sigma rule (see _casing_flags)
_CAPITAL_SIGMA, _FINAL_SIGMA = 0x03A3, "\u03c2"
# Hash-table default meaning "character maps to itself" (NUL is always dropped, never an output).
_IDENTITY = "\x00"
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cn", "Co", "Cs"})  # a block of only these: all _DROP

# Code point blocks BERT treats as CJK ideographs (each becomes its own word).
_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
               (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True  # all non-letter/number ASCII, e.g. "$" "^" "`" count as punctuation in BERT
    return unicodedata.category(ch).startswith("P")


def _normalize_char(ch: str, lower_case: bool) -> str:
    """One character -> BERT's normalised text, punctuation already surrounded by spaces."""
    if lower_case:
        ch = "".join(c for c in unicodedata.normalize("NFD", ch.lower())
                     if unicodedata.category(c) != "Mn")
    return "".join(f" {c} " if _is_punctuation(c) else c for c in ch)


def _casing_flags(cp: int) -> int:
    """Python's internal Cased / Case_Ignorable flags of a code point, probed through str.lower().

    They decide Python's Final_Sigma rule ("ΑΣ".lower() == "ας"), which BERT inherits.
    """
    ch = chr(cp)
    cased = ch.islower() or ch.isupper() or unicodedata.category(ch) == "Lt"
    if cased:  # a cased char after Σ blocks Final_Sigma unless it is also case-ignorable
        ignorable = ("\u0391\u03a3" + ch).lower()[1] == "\u03c2"
    else:  # an uncased char between a cased char and Σ is skipped only if case-ignorable
        ignorable = ("\u0391" + ch + "\u03a3").lower()[-1] == "\u03c2"
    return (_CASED if cased else 0) | (_CASE_IGNORABLE if ignorable else 0)


_BLOCK = 1 << 12  # code points per block of bert_char_tables
_SPACE_RE = re.compile(r"\s")  # str.isspace() (both are CPython's _PyUnicode_IsWhitespace)


def _block_classes(lo: int, block: str, categories: Sequence[str]) -> np.ndarray:
    """BERT's class of each code point of `block` (starting at `lo`), decided on the input char:
    controls, format, unassigned, private use, surrogates, NUL and U+FFFD are dropped; tab, CR,
    LF, Zs and the other chars Python's str.split() splits on are spaces; CJK ideographs are their
    own words."""
    codes = np.full([len(block)], _NORMAL, np.int32)                         # [block]
    codes[[i for i, c in enumerate(categories) if c[0] == "C"]] = _DROP
    codes[[m.start() for m in _SPACE_RE.finditer(block)
           if categories[m.start()][0] != "C"]] = _SPACE  # Zs, U+2028/U+2029 (not Cc's \x1c-\x1f)
    for ch in "\t\n\r":
        if lo <= ord(ch) < lo + len(block):
            codes[ord(ch) - lo] = _SPACE
    for cp in (0, 0xFFFD):
        if lo <= cp < lo + len(block):
            codes[cp - lo] = _DROP
    for first, last in _CJK_RANGES:
        span = slice(max(first, lo) - lo, min(last + 1, lo + len(block)) - lo)
        if span.start < span.stop:
            codes[span] = np.where(codes[span] == _NORMAL, _CJK, codes[span])
    return codes


def _unchanged(chars: str, categories: Sequence[str], lower_case: bool) -> bool:
    """True when every char of `chars` normalises to itself (checked on the whole string at once:
    lower() and NFD leave it alone, and it holds no Mn and no punctuation)."""
    if any(c[0] == "P" or (lower_case and c == "Mn") for c in categories):
        return False
    if any(_is_punctuation(ch) for ch in chars if ch < "\x80"):
        return False
    return not lower_case or (chars.lower() == chars
                              and unicodedata.normalize("NFD", chars) == chars)


@functools.lru_cache(maxsize=4)
def bert_char_tables(lower_case: bool = True):
    """(range starts int32, range codes int32, {cp: normalised string}) for BERT's normaliser.

    A code is ``class | _CASED | _CASE_IGNORABLE`` for the run of code points starting at its
    start. Computed from this interpreter's ``unicodedata`` (Unicode {ver}), a block of code
    points at a time (most blocks are unassigned or private use: all dropped); cached.
    """
    codes = np.full([sys.maxunicode + 1], _DROP, np.int32)  # [code points]
    mapping = {}
    for lo in range(0, sys.maxunicode + 1, _BLOCK):
        block = "".join(map(chr, range(lo, min(lo + _BLOCK, sys.maxunicode + 1))))
        categories = list(map(unicodedata.category, block))
        if _DROPPED_CATEGORIES.issuperset(categories):
            continue
        block_codes = _block_classes(lo, block, categories)
        codes[lo:lo + len(block)] = block_codes
        kept = np.flatnonzero((block_codes == _NORMAL) | (block_codes == _CJK))
        chars = "".join(block[i] for i in kept)
        if len(kept) and not _unchanged(chars, [categories[i] for i in kept], lower_case):
            for i, ch in zip(kept, chars):
                out = _normalize_char(ch, lower_case)
                if out != ch:
                    if any(c.isspace() and c != " " for c in out):
                        raise AssertionError(f"normalised U+{lo + i:04X} contains non-space "
                                             f"whitespace")
                    mapping[lo + int(i)] = out
        if lower_case:
            for i in np.flatnonzero(block_codes == _NORMAL):
                codes[lo + i] |= _casing_flags(lo + int(i))
    starts = np.flatnonzero(np.concatenate([[True], codes[1:] != codes[:-1]])).astype(np.int32)
    return starts, codes[starts], mapping


bert_char_tables.__doc__ = bert_char_tables.__doc__.replace("{ver}", unicodedata.unidata_version)


def load_vocab(vocab_path: str) -> list[str]:
    """Reads a ``vocab.txt`` (one token per line, line index = id); errors name the file and line."""
    tokens = []
    with tf.io.gfile.GFile(str(vocab_path), "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            try:
                token = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise ValueError(f"{vocab_path}:{line_no}: vocab line is not UTF-8 ({e})") from None
            if not token:
                raise ValueError(f"{vocab_path}:{line_no}: empty vocab entry")
            tokens.append(token)
    seen = {}
    for i, t in enumerate(tokens):
        if t in seen:
            raise ValueError(f"{vocab_path}:{i + 1}: duplicate vocab entry {t!r} (first on line {seen[t] + 1})")
        seen[t] = i
    if not tokens:
        raise ValueError(f"{vocab_path}: empty vocab file")
    return tokens


def file_sha256(path: str) -> str:
    """Hex sha256 of a file (used in manifests to pin the vocab a dataset was built with)."""
    h = hashlib.sha256()
    with tf.io.gfile.GFile(str(path), "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _as_batch(texts):
    """string [N] (or a scalar) -> ([N] tensor, was_scalar)."""
    texts = tf.convert_to_tensor(texts, dtype=tf.string)
    if texts.shape.rank == 0:
        return tf.expand_dims(texts, 0), True
    if texts.shape.rank != 1:
        raise ValueError(f"texts must be a string Tensor [N] (or a scalar), got shape {texts.shape}")
    return texts, False


class BertNormalizer(tf.Module):
    """BERT's BasicTokenizer as graph ops: normalised text and its whitespace-separated words.

    Needs no vocab, so vocab learning splits words exactly as the tokenizer will.
    """

    def __init__(self, lower_case: bool = True):
        super().__init__(name="bert_normalizer")
        self.lower_case = bool(lower_case)
        starts, codes, mapping = bert_char_tables(self.lower_case)
        self._range_starts = tf.constant(starts)  # [R] first code point of each run
        self._range_codes = tf.constant(codes)  # [R] class | casing flags of the run
        keys = np.fromiter(mapping.keys(), np.int64, len(mapping))
        values = np.asarray(list(mapping.values()), dtype=object)
        self._char_map = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(keys, values, tf.int64, tf.string), _IDENTITY)
        self._words = tf_text.WhitespaceTokenizer()

    def normalize(self, texts) -> tf.Tensor:
        """string [N] -> normalised string [N]: cleaned, lowercased, accents stripped, words spaced."""
        texts, scalar = _as_batch(texts)
        out = self.normalize_with_chars(texts)[0]
        return out[0] if scalar else out

    def split_words(self, texts) -> tf.RaggedTensor:
        """string [N] -> normalised words, ragged [N, (words)] (BERT's basic tokens)."""
        texts, scalar = _as_batch(texts)
        words = self._words.tokenize(self.normalize_with_chars(texts)[0])
        return words[0] if scalar else words

    def split_with_offsets(self, normalized: tf.Tensor):
        """Normalised strings [N] -> words, byte starts, byte ends (into the normalised strings)."""
        return self._words.tokenize_with_offsets(normalized)

    def normalize_with_chars(self, texts: tf.Tensor):
        """string [N] -> (normalised strings [N], per-char ragged byte starts/ends, flat byte lengths)."""
        cps, char_starts = tf.strings.unicode_decode_with_offsets(
            texts, "UTF-8", errors="replace", replacement_char=0xFFFD)  # [N, (chars)]
        flat_cp = cps.flat_values  # [C]
        code = tf.gather(self._range_codes,
                         tf.searchsorted(self._range_starts, flat_cp, side="right") - 1)  # [C]
        cls = tf.bitwise.bitwise_and(code, _CLASS_BITS)
        mapped = self._char_map.lookup(tf.cast(flat_cp, tf.int64))
        itself = tf.strings.unicode_encode(tf.expand_dims(flat_cp, 1), "UTF-8")
        base = tf.where(tf.equal(mapped, _IDENTITY), itself, mapped)
        spaced = tf.strings.join([" ", base, " "])
        out = tf.where(tf.equal(cls, _NORMAL), base,
                       tf.where(tf.equal(cls, _CJK), spaced,
                                tf.where(tf.equal(cls, _SPACE), " ", "")))  # [C]
        if self.lower_case:
            out = tf.where(self._final_sigma(flat_cp, code, cps.value_rowids()), _FINAL_SIGMA, out)
        normalized = tf.strings.reduce_join(cps.with_flat_values(out), axis=1)  # [N]
        return normalized, cps, char_starts, tf.strings.length(out)

    @staticmethod
    def _final_sigma(flat_cp, code, char_row):
        """bool [C]: capital sigmas that Python's str.lower() turns into final "ς".

        Final iff the nearest non-ignorable char before it (same text) is cased and the nearest
        one after it is not cased or absent. Dropped chars are invisible (BERT deletes them
        before lowercasing); spaces and CJK chars are neither cased nor ignorable, so the rule
        never crosses a word boundary, as in BERT (which lowercases word by word).
        """
        cls = tf.bitwise.bitwise_and(code, _CLASS_BITS)
        ignorable = tf.logical_or(tf.equal(cls, _DROP),
                                  tf.not_equal(tf.bitwise.bitwise_and(code, _CASE_IGNORABLE), 0))
        cased = tf.not_equal(tf.bitwise.bitwise_and(code, _CASED), 0)
        anchors = tf.cast(tf.where(tf.logical_not(ignorable))[:, 0], tf.int32)  # [K] char indices
        sigmas = tf.cast(tf.where(tf.equal(flat_cp, _CAPITAL_SIGMA))[:, 0], tf.int32)  # [S]
        n_anchor = tf.size(anchors)
        prev_k = tf.searchsorted(anchors, sigmas, side="left") - 1
        next_k = tf.searchsorted(anchors, sigmas, side="right")
        prev_i = tf.gather(anchors, tf.maximum(prev_k, 0))
        next_i = tf.gather(anchors, tf.minimum(next_k, n_anchor - 1))
        sig_row = tf.gather(char_row, sigmas)
        prev_ok = (prev_k >= 0) & tf.equal(tf.gather(char_row, prev_i), sig_row) & tf.gather(cased, prev_i)
        next_blocks = ((next_k < n_anchor) & tf.equal(tf.gather(char_row, next_i), sig_row)
                       & tf.gather(cased, next_i))
        final = prev_ok & tf.logical_not(next_blocks)  # [S]
        return tf.scatter_nd(tf.expand_dims(sigmas, 1), final, tf.shape(flat_cp))


class WordpieceTokenizer(tf.Module):
    """BERT uncased WordPiece on tensorflow-text; graph-safe (tf.data, SavedModel).

    ``tokenize`` maps a string Tensor ``[N]`` to int32 ids ``RaggedTensor [N, (tokens)]``.
    Special ids (``pad_id``, ``unk_id``, ``cls_id``, ``sep_id``, ``mask_id``) are looked up by
    name (``[PAD]`` or ``<pad>`` etc.). Special-token strings inside the text are *not* mapped to
    their ids: "[MASK]" in raw text tokenizes as "[", "mask", "]" (the safe choice for user text;
    HuggingFace maps them to the special ids). Words over ``max_chars_per_word`` characters
    (default 100, as HF) become ``[UNK]``.
    """

    def __init__(self, vocab_path: str, lower_case: bool = True,
                 max_chars_per_word: int = HF_MAX_CHARS_PER_WORD):
        super().__init__(name="wordpiece_tokenizer")
        self.vocab_path = str(vocab_path)
        self.lower_case = bool(lower_case)
        self.max_chars_per_word = int(max_chars_per_word)
        self.vocab: list[str] = load_vocab(self.vocab_path)
        self._token_to_id = {t: i for i, t in enumerate(self.vocab)}
        self.vocab_size = len(self.vocab)
        from funnel_tf.text.vocab import VocabError

        self._special: dict = {}
        for kind, names in _SPECIAL_NAMES.items():
            ids = [self._token_to_id[n] for n in names if n in self._token_to_id]
            self._special[kind] = ids[0] if ids else None
            if not ids and kind in _ALWAYS_NEEDED:
                raise VocabError(f"{self.vocab_path}: the vocab has no {names[0]} (or {names[1]}) "
                                 f"token, needed for tokenizing")
        self.unk_id, self.cls_id, self.sep_id = (self._special[k] for k in _ALWAYS_NEEDED)
        self.unk_token = self.vocab[self.unk_id]

        self.normalizer = BertNormalizer(self.lower_case)
        # BERT limits words in characters (checked before this op); a UTF-8 char is <= 4 bytes.
        self._wordpiece = tf_text.FastWordpieceTokenizer(
            vocab=self.vocab, suffix_indicator="##",
            max_bytes_per_word=4 * self.max_chars_per_word + 4, token_out_type=tf.int32,
            unknown_token=self.unk_token, no_pretokenization=True)

    def _needed(self, kind: str) -> int:
        token_id = self._special[kind]
        if token_id is None:
            from funnel_tf.text.vocab import VocabError

            names = _SPECIAL_NAMES[kind]
            raise VocabError(f"{self.vocab_path}: the vocab has no {names[0]} (or {names[1]}) "
                             f"token, needed for {_NEEDED_FOR[kind]}; add it to the vocab")
        return token_id

    @property
    def pad_id(self) -> int:
        """Id of [PAD]; a VocabError (naming the use) when the vocab has none."""
        return self._needed("pad")

    @property
    def mask_id(self) -> int:
        """Id of [MASK]; a VocabError (naming the use) when the vocab has none."""
        return self._needed("mask")

    def has_token(self, kind: str) -> bool:
        """Whether the vocab has the special token `kind` ("pad", "mask", ...)."""
        return self._special[kind] is not None

    # ----------------------------------------------------------------------------- graph ops
    def _wordpieces(self, normalized: tf.Tensor):
        """Normalised strings [N] -> words [N, (words)] (over-long ones replaced by the unk token) + byte offsets."""
        words, w_start, w_end = self.normalizer.split_with_offsets(normalized)  # [N, (words)]
        too_long = tf.strings.length(words.flat_values, unit="UTF8_CHAR") > self.max_chars_per_word
        words = words.with_flat_values(tf.where(too_long, self.unk_token, words.flat_values))
        return words, w_start, w_end

    def tokenize(self, texts) -> tf.RaggedTensor:
        """string ``[N]`` -> int32 ``RaggedTensor [N, (tokens)]``."""
        texts, scalar = _as_batch(texts)
        normalized = self.normalizer.normalize_with_chars(texts)[0]
        words, _, _ = self._wordpieces(normalized)
        ids = self._wordpiece.tokenize(words).merge_dims(1, 2)
        return ids[0] if scalar else ids

    def tokenize_with_offsets(self, texts):
        """string ``[N]`` -> (int32 ids, int64 starts, int64 ends), ragged ``[N, (tokens)]``.

        Offsets are byte offsets into the UTF-8 input: token ``j`` of row ``i`` came from
        ``texts[i][starts[i, j]:ends[i, j]]`` (a ``##`` piece covers only its part of the word;
        ``[UNK]`` covers its whole word).
        """
        texts, scalar = _as_batch(texts)
        normalized, cps, char_starts, out_len = self.normalizer.normalize_with_chars(texts)
        words, w_start, w_end = self._wordpieces(normalized)
        ids, p_start, p_end = self._wordpiece.tokenize_with_offsets(words)  # [N, (w), (p)]
        # Piece offsets are relative to their word; make them normalised-string offsets.
        word_of_piece = ids.values.value_rowids()  # [P] flat word index of each piece
        w_start_p = tf.gather(tf.cast(w_start.flat_values, tf.int64), word_of_piece)
        w_len_p = tf.gather(tf.cast(w_end.flat_values - w_start.flat_values, tf.int64), word_of_piece)
        is_unk = tf.equal(ids.flat_values, self.unk_id)  # [UNK] spans its whole (original) word
        start_n = w_start_p + tf.where(is_unk, tf.zeros_like(w_len_p), tf.cast(p_start.flat_values, tf.int64))
        end_n = w_start_p + tf.where(is_unk, w_len_p, tf.cast(p_end.flat_values, tf.int64))
        ids = ids.merge_dims(1, 2)  # [N, (tokens)]

        # Each input char i owns normalised bytes [pos_i, pos_i + len_i) of the batch's concatenation.
        out_len = tf.cast(out_len, tf.int64)
        pos = tf.cumsum(out_len, exclusive=True)  # [C]
        pos_total = tf.concat([pos, [tf.reduce_sum(out_len)]], 0)
        row_base = tf.gather(pos_total, cps.row_splits[:-1])  # [N] where each row's string starts
        base = tf.gather(row_base, ids.value_rowids())  # [T]
        char_of_start = tf.searchsorted(pos, start_n + base, side="right") - 1
        char_of_end = tf.searchsorted(pos, end_n - 1 + base, side="right") - 1
        # Byte span of each input char: its start up to the next char's start (or the string end).
        flat_starts = char_starts.flat_values  # [C]
        char_row = char_starts.value_rowids()
        is_last = tf.equal(tf.range(tf.size(flat_starts, out_type=tf.int64)) + 1,
                           tf.gather(char_starts.row_splits[1:], char_row))
        byte_len = tf.cast(tf.strings.length(texts, unit="BYTE"), tf.int64)  # [N]
        next_start = tf.concat([flat_starts[1:], tf.zeros([1], tf.int64)], 0)
        flat_ends = tf.where(is_last, tf.gather(byte_len, char_row), next_start)
        starts = ids.with_flat_values(tf.gather(flat_starts, char_of_start))
        ends = ids.with_flat_values(tf.gather(flat_ends, char_of_end))
        if scalar:
            return ids[0], starts[0], ends[0]
        return ids, starts, ends

    # ------------------------------------------------------------------------- python helpers
    def token_to_id(self, token: str) -> int:
        return self._token_to_id.get(token, self.unk_id)

    def id_to_token(self, ids: Union[int, Iterable[int]]):
        """An id -> its token string; a sequence of ids -> list of token strings."""
        if isinstance(ids, (int, np.integer)) or getattr(ids, "ndim", None) == 0:
            return self.vocab[int(ids)]
        return [self.vocab[int(i)] for i in ids]

    def encode(self, text: str) -> list[int]:
        """One Python string -> list of ids (eager helper)."""
        return self.tokenize(tf.constant([text]))[0].numpy().tolist()

    def tokens(self, text: str) -> list[str]:
        """One Python string -> its WordPiece token strings (for tests and debugging)."""
        return self.id_to_token(self.encode(text))

    def vocab_sha256(self) -> str:
        return file_sha256(self.vocab_path)


_SHARED: "collections.OrderedDict[tuple, WordpieceTokenizer]" = collections.OrderedDict()
_SHARED_KEPT = 4


def shared_tokenizer(vocab_path: str, lower_case: bool = True) -> WordpieceTokenizer:
    """This process's WordpieceTokenizer of `vocab_path` (same path, same bytes, same options).

    Runs in one process (a sweep, a notebook, the test suite) reuse its tables and the in-graph
    encoders traced for it (packing.traced_per_tokenizer) instead of building and tracing them
    again; a changed file gives a new one. The newest few are kept."""
    key = (str(vocab_path), file_sha256(vocab_path), bool(lower_case))
    tokenizer = _SHARED.pop(key, None) or WordpieceTokenizer(vocab_path, lower_case=lower_case)
    _SHARED[key] = tokenizer
    while len(_SHARED) > _SHARED_KEPT:
        _SHARED.popitem(last=False)
    return tokenizer


def special_ids(tokenizer: WordpieceTokenizer) -> dict:
    """The special ids of a tokenizer as a plain dict (handy for configs and manifests); tokens
    the vocab lacks are left out."""
    return {k: v for k, v in tokenizer._special.items() if v is not None}


__all__: Sequence[str] = ["HF_MAX_CHARS_PER_WORD", "BERT_MAX_CHARS_PER_WORD", "WordpieceTokenizer", "BertNormalizer", "load_vocab", "file_sha256", "special_ids", "shared_tokenizer",
                          "bert_char_tables"]
