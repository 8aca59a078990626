"""BERT uncased WordPiece tokenization on tensorflow-text, graph-safe for tf.data and SavedModels.

The Funnel-Transformer checkpoints expect exactly the ids of BERT's uncased ``FullTokenizer``
(clean text, lowercase, NFD + accent stripping, punctuation / CJK splitting, greedy longest-match
WordPiece with ``##``). tensorflow-text's ``FastBertTokenizer`` does all of that in one C++ op
(and returns byte offsets into the *original* input); the residue where it differs from BERT's
Python reference is repaired here with cheap string ops before tokenization (see
``_normalize_for_bert``). ``tests/text/test_wordpiece.py`` is the parity gate against
HuggingFace's pure-Python ``BertTokenizer``.
"""

from __future__ import annotations

import hashlib
from typing import Iterable, Sequence, Union

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

# BERT counts max word length in characters (200); tf-text counts bytes. A UTF-8 char is at most
# 4 bytes, so a byte limit of 4x never fires before the character limit, which we apply ourselves.
_BYTES_PER_CHAR = 4


def load_vocab(vocab_path: str) -> list[str]:
    """Reads a ``vocab.txt`` (one token per line, line index = id); errors name the file and line."""
    tokens = []
    with tf.io.gfile.GFile(vocab_path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            try:
                token = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise ValueError(f"{vocab_path}:{line_no}: vocab line is not UTF-8 ({e})") from None
            if not token:
                raise ValueError(f"{vocab_path}:{line_no}: empty vocab entry")
            tokens.append(token)
    if len(set(tokens)) != len(tokens):
        seen, dup = set(), None
        for i, t in enumerate(tokens):
            if t in seen:
                dup = (i + 1, t)
                break
            seen.add(t)
        raise ValueError(f"{vocab_path}:{dup[0]}: duplicate vocab entry {dup[1]!r}")
    return tokens


def file_sha256(path: str) -> str:
    """Hex sha256 of a file (used in manifests to pin the vocab a dataset was built with)."""
    h = hashlib.sha256()
    with tf.io.gfile.GFile(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class WordpieceTokenizer(tf.Module):
    """BERT uncased WordPiece on tensorflow-text; graph-safe (tf.data, SavedModel).

    ``tokenize`` maps a string Tensor ``[N]`` to int32 ids ``RaggedTensor [N, (tokens)]``.
    Special ids (``pad_id``, ``unk_id``, ``cls_id``, ``sep_id``, ``mask_id``) are looked up by
    name (``[PAD]`` or ``<pad>`` etc.). Special-token strings inside the text are *not* mapped to
    their ids: "[MASK]" in raw text tokenizes as "[", "mask", "]" (the safe choice for user text).
    """

    def __init__(self, vocab_path: str, lower_case: bool = True, max_chars_per_word: int = 200):
        super().__init__(name="wordpiece_tokenizer")
        self.vocab_path = str(vocab_path)
        self.lower_case = bool(lower_case)
        self.max_chars_per_word = int(max_chars_per_word)
        self.vocab: list[str] = load_vocab(self.vocab_path)
        self._token_to_id = {t: i for i, t in enumerate(self.vocab)}
        self.vocab_size = len(self.vocab)
        for kind, names in _SPECIAL_NAMES.items():
            ids = [self._token_to_id[n] for n in names if n in self._token_to_id]
            if not ids:
                raise ValueError(f"{self.vocab_path}: vocab has none of {names} (needed for {kind})")
            setattr(self, f"{kind}_id", ids[0])
        self.unk_token = self.vocab[self.unk_id]
        self._fast = tf_text.FastBertTokenizer(
            vocab=self.vocab,
            suffix_indicator="##",
            max_bytes_per_word=self.max_chars_per_word * _BYTES_PER_CHAR,
            token_out_type=tf.int32,
            unknown_token=self.unk_token,
            lower_case_nfd_strip_accents=self.lower_case,
        )

    # ----------------------------------------------------------------------------- graph ops
    def tokenize(self, texts) -> tf.RaggedTensor:
        """string ``[N]`` -> int32 ``RaggedTensor [N, (tokens)]``."""
        ids, _, _ = self.tokenize_with_offsets(texts)
        return ids

    def tokenize_with_offsets(self, texts):
        """string ``[N]`` -> (int32 ids, int64 starts, int64 ends), ragged ``[N, (tokens)]``.

        Offsets are byte offsets into the UTF-8 input: token ``j`` of row ``i`` came from
        ``texts[i][starts[i, j]:ends[i, j]]`` (a ``##`` piece covers only its part of the word).
        """
        texts = tf.convert_to_tensor(texts, dtype=tf.string)
        ids, starts, ends = self._fast.tokenize_with_offsets(texts)
        return ids, tf.cast(starts, tf.int64), tf.cast(ends, tf.int64)

    # ------------------------------------------------------------------------- python helpers
    def token_to_id(self, token: str) -> int:
        return self._token_to_id.get(token, self.unk_id)

    def id_to_token(self, ids: Union[int, Iterable[int]]):
        """An id -> its token string; a sequence of ids -> list of token strings."""
        if isinstance(ids, (int,)) or (hasattr(ids, "ndim") and getattr(ids, "ndim") == 0):
            return self.vocab[int(ids)]
        return [self.vocab[int(i)] for i in ids]

    def tokens(self, text: str) -> list[str]:
        """One Python string -> its WordPiece token strings (for tests and debugging)."""
        ids = self.tokenize(tf.constant([text]))[0].numpy().tolist()
        return self.id_to_token(ids)

    def encode(self, text: str) -> list[int]:
        """One Python string -> list of ids (eager helper)."""
        return self.tokenize(tf.constant([text]))[0].numpy().tolist()

    def vocab_sha256(self) -> str:
        return file_sha256(self.vocab_path)


def special_ids(tokenizer: WordpieceTokenizer) -> dict:
    """The special ids of a tokenizer as a plain dict (handy for configs and manifests)."""
    return {k: getattr(tokenizer, f"{k}_id") for k in _SPECIAL_NAMES}


__all__: Sequence[str] = ["WordpieceTokenizer", "load_vocab", "file_sha256", "special_ids"]
