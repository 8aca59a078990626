"""FunnelTokenizer: raw text -> the model's input dict, token for token what HF's Python (slow)
FunnelTokenizer gives (not its Rust "fast" tokenizer, transformers 5's default, which normalises
some text differently: unassigned code points, some combining marks, final sigma; see
funnel_tf/text/wordpiece.py).

The "preprocessor" of the keras-hub split: BERT-uncased WordPiece (funnel_tf.text.wordpiece) plus
`[CLS] A [SEP] (B [SEP])` packing with token types CLS 2, A 0, B 1 and padding to a static length
(funnel_tf.text.packing). All of it is TensorFlow ops, so it runs eagerly, in `tf.function`, in
`tf.data` (`ds.map(tokenizer)`) and inside SavedModels.

    tokenizer = FunnelTokenizer.from_pretrained("path/to/hf-funnel-small")   # finds vocab.txt
    features = tokenizer(["Hello world!"], sequence_length=128)   # input_ids / attention_mask / token_type_ids
"""

from __future__ import annotations

import json
import operator
import os
import tempfile
from typing import Optional

import tensorflow as tf

from funnel_tf import json_text
from funnel_tf.errors import UserError
from funnel_tf.text.packing import pack_inputs
from funnel_tf.text.wordpiece import HF_MAX_CHARS_PER_WORD, WordpieceTokenizer, special_ids

# Where the vocab lives: ours / HF folders (vocab.txt), the original release (vocab.uncased.txt).
VOCAB_NAMES = ("vocab.txt", "vocab.uncased.txt")
TOKENIZER_CONFIG_NAME = "tokenizer_config.json"
FAST_TOKENIZER_NAME = "tokenizer.json"  # HF fast tokenizers; used when a folder has no vocab.txt
DEFAULT_SEQUENCE_LENGTH = 128
# Pair truncation: HF tokenizers' rule, or BERT's pop loop (finetune.py's readers, exports).
TRUNCATIONS = ("hf_longest_first", "longest_first")


class TokenizerError(UserError, ValueError):
    """A vocab that cannot be found or read, or a call the tokenizer cannot serve; says what to do."""


def find_vocab(path: str) -> str:
    """`path` itself if it is a file, else the vocab inside the folder (ours, HF or original release)."""
    if tf.io.gfile.exists(path) and not tf.io.gfile.isdir(path):
        return path
    if not tf.io.gfile.isdir(path):
        raise TokenizerError(f"{path}: no such file or directory (expected a model folder with "
                             f"{' or '.join(VOCAB_NAMES)}, or the vocab file itself)")
    for name in VOCAB_NAMES:
        candidate = os.path.join(path, name)
        if tf.io.gfile.exists(candidate):
            return candidate
    if tf.io.gfile.exists(os.path.join(path, FAST_TOKENIZER_NAME)):
        return _vocab_from_tokenizer_json(os.path.join(path, FAST_TOKENIZER_NAME))
    found = sorted(tf.io.gfile.listdir(path))[:12]
    raise TokenizerError(f"{path}: no vocab in this folder (looked for {', '.join(VOCAB_NAMES)}, "
                         f"{FAST_TOKENIZER_NAME}; found {found}); pass the vocab file itself, e.g. the BERT "
                         f"uncased vocab.txt")


def _vocab_from_tokenizer_json(path: str) -> str:
    """An HF fast-tokenizer file's WordPiece vocab, written as vocab.txt into a temp folder."""
    try:
        with tf.io.gfile.GFile(path) as f:
            model = json.loads(f.read())["model"]
        vocab = model["vocab"]
        if model.get("type") != "WordPiece" or not isinstance(vocab, dict):
            raise TokenizerError(f"{path}: a {model.get('type')} tokenizer, not WordPiece; Funnel needs a "
                                 f"WordPiece vocab.txt")
        tokens = sorted(vocab, key=vocab.get)
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise TokenizerError(f"{path}: not an HF tokenizer.json with a WordPiece vocab ({e!r})") from None
    if [vocab[t] for t in tokens] != list(range(len(tokens))):
        raise TokenizerError(f"{path}: WordPiece ids are not 0..{len(tokens) - 1} without gaps")
    folder = tempfile.mkdtemp(prefix="funnel_tf_vocab_")
    target = os.path.join(folder, VOCAB_NAMES[0])
    with open(target, "w", encoding="utf-8") as f:
        f.write("".join(t + "\n" for t in tokens))
    return target


def _read_lower_case(folder: str) -> Optional[bool]:
    """`do_lower_case` from an HF tokenizer_config.json beside the vocab, if there is one."""
    path = os.path.join(folder, TOKENIZER_CONFIG_NAME)
    if not tf.io.gfile.exists(path):
        return None
    try:
        with tf.io.gfile.GFile(path) as f:
            value = json.loads(f.read()).get("do_lower_case")
    except (json.JSONDecodeError, AttributeError) as e:
        raise TokenizerError(f"{path}: not a JSON object ({e}); fix or delete it") from None
    return None if value is None else bool(value)


def _as_strings(texts, what: str):
    """str / list / array / tensor -> (string tensor [N], was a scalar)."""
    if isinstance(texts, (list, tuple)) and not all(isinstance(t, (str, bytes)) for t in texts):
        bad = next(t for t in texts if not isinstance(t, (str, bytes)))
        raise TokenizerError(f"{what} must be strings; got an element of type {type(bad).__name__}")
    if isinstance(texts, (list, tuple)) and not texts:
        texts = tf.constant([], tf.string)  # an empty batch, not float32
    try:
        texts = tf.convert_to_tensor(texts)
    except (TypeError, ValueError) as e:
        raise TokenizerError(f"{what} must be a string or a list of strings ({e})") from None
    if texts.dtype != tf.string:
        hint = (" (a dataset of (text, label) pairs: ds.map(lambda text, label: (tokenizer(text), label)))"
                if what == "pair_texts" else "")
        raise TokenizerError(f"{what} must be strings, got dtype {texts.dtype.name}{hint}")
    if texts.shape.rank == 0:
        return tf.expand_dims(texts, 0), True
    if texts.shape.rank != 1:
        raise TokenizerError(f"{what} must be one string or a 1-D batch of strings, got shape {texts.shape}")
    return texts, False


class FunnelTokenizer(tf.Module):
    """BERT-uncased WordPiece + Funnel packing; `tokenizer(texts, pair_texts=None, sequence_length=None)`.

    Returns `{"input_ids", "attention_mask", "token_type_ids"}` as int32 `[N, sequence_length]`
    (`[sequence_length]` for one string). Pairs are cut to fit as HF's tokenizers cut them
    (`truncation="hf_longest_first"`: the shorter keeps up to half); `truncation="longest_first"` is
    BERT's pop loop, which finetune.py's readers and exported SavedModels use (they differ by one
    token when both segments are long and the budget is odd). Words over `max_chars_per_word` characters (HF's 100 by default) become
    the unknown token. Special-token strings in the text ("[SEP]") stay plain text (HF maps them
    to their ids), so user text can never forge a segment boundary.

    Args:
        vocab_path: a WordPiece vocab file, one token a line (its line number is the id);
            `FunnelTokenizer.from_pretrained(folder)` finds it in a model folder.
        lower_case: lower-case and strip accents first (the uncased models; HF's do_lower_case).
        sequence_length: the default length calls pad or truncate to (2 special tokens + text).
        max_chars_per_word: longer words become the unknown token.
        truncation: "hf_longest_first" or "longest_first", how a pair is cut (see above).

    Returns (when called):
        A dict of int32 tensors `input_ids`, `attention_mask` (1 = token, 0 = padding) and
        `token_type_ids` (CLS 2, first segment 0, second 1), each [N, sequence_length].

    Example:

    >>> import os, tempfile
    >>> from funnel_tf import FunnelTokenizer
    >>> vocab = os.path.join(tempfile.mkdtemp(), "vocab.txt")
    >>> with open(vocab, "w") as f:
    ...     _ = f.write("\\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "funnel",
    ...                            "models", "squeeze", "##s", "text", "."]) + "\\n")
    >>> tokenizer = FunnelTokenizer(vocab, sequence_length=8)
    >>> features = tokenizer(["Funnel models squeeze text.", "Texts!"])
    >>> features["input_ids"].numpy().tolist()  # [CLS] ... [SEP] [PAD]...; "!" is unknown
    [[2, 5, 6, 7, 9, 10, 3, 0], [2, 9, 8, 1, 3, 0, 0, 0]]
    >>> features["attention_mask"].numpy().tolist()
    [[1, 1, 1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 0, 0, 0]]
    >>> pair = tokenizer("funnel models", "squeeze text")  # one pair: [sequence_length]
    >>> pair["token_type_ids"].numpy().tolist()
    [2, 0, 0, 0, 1, 1, 1, 0]
    >>> tokenizer.decode(features["input_ids"][1])
    'texts [UNK]'
    """

    def __init__(self, vocab_path: str, lower_case: bool = True,
                 sequence_length: int = DEFAULT_SEQUENCE_LENGTH,
                 max_chars_per_word: int = HF_MAX_CHARS_PER_WORD, truncation: str = "hf_longest_first"):
        super().__init__(name="funnel_tokenizer")
        self.sequence_length = self._check_length(sequence_length, 2)
        if truncation not in TRUNCATIONS:
            raise TokenizerError(f"truncation must be one of {list(TRUNCATIONS)}, got {truncation!r}")
        self.truncation = truncation
        try:
            self.wordpiece = WordpieceTokenizer(vocab_path, lower_case=lower_case,
                                                max_chars_per_word=max_chars_per_word)
        except (ValueError, OSError, tf.errors.OpError) as e:
            raise TokenizerError(f"cannot read the vocab: {e}") from None
        wp = self.wordpiece
        self.vocab_path, self.lower_case, self.vocab_size = wp.vocab_path, wp.lower_case, wp.vocab_size
        self.max_chars_per_word = wp.max_chars_per_word
        self.unk_id, self.cls_id, self.sep_id = wp.unk_id, wp.cls_id, wp.sep_id

    # [PAD] / [MASK] are needed only by some uses: asking for one the vocab lacks is a
    # VocabError naming the token and the use (text/wordpiece.py).
    @property
    def pad_id(self) -> int:
        return self.wordpiece.pad_id

    @property
    def mask_id(self) -> int:
        return self.wordpiece.mask_id

    @classmethod
    def from_pretrained(cls, path: str, **kwargs) -> "FunnelTokenizer":
        """The tokenizer of a model folder (ours, HF, original release) or of a vocab file.
        `lower_case` follows an HF tokenizer_config.json when present; kwargs override."""
        vocab = find_vocab(path)
        if "lower_case" not in kwargs:
            lower = _read_lower_case(path if tf.io.gfile.isdir(path) else os.path.dirname(vocab))
            if lower is not None:
                kwargs["lower_case"] = lower
        return cls(vocab, **kwargs)

    def save_pretrained(self, directory: str) -> str:
        """Write vocab.txt and an HF-style tokenizer_config.json into `directory`; returns the vocab path."""
        tf.io.gfile.makedirs(directory)
        target = os.path.join(directory, VOCAB_NAMES[0])
        if os.path.abspath(target) != os.path.abspath(self.vocab_path):
            tf.io.gfile.copy(self.vocab_path, target, overwrite=True)
        config = {"tokenizer_class": "FunnelTokenizer", "do_lower_case": self.lower_case,
                  "model_max_length": self.sequence_length, "max_chars_per_word": self.max_chars_per_word}
        for kind in ("unk", "sep", "pad", "cls", "mask"):
            config[f"{kind}_token"] = self.wordpiece.vocab[getattr(self, f"{kind}_id")]
        with tf.io.gfile.GFile(os.path.join(directory, TOKENIZER_CONFIG_NAME), "w") as f:
            f.write(json_text.dumps(config, indent=2, sort_keys=True) + "\n")
        return target

    @staticmethod
    def _check_length(sequence_length, minimum: int) -> int:
        try:
            if isinstance(sequence_length, bool):
                raise TypeError
            length = operator.index(sequence_length)
        except TypeError:
            raise TokenizerError(f"sequence_length must be an int, got {sequence_length!r}") from None
        if length <= minimum:
            raise TokenizerError(f"sequence_length={length} leaves no room for text after the {minimum} "
                                 f"special tokens; use e.g. 128")
        return length

    # ------------------------------------------------------------------------------- graph ops
    def tokenize(self, texts) -> tf.RaggedTensor:
        """string [N] -> WordPiece ids, int32 ragged [N, (tokens)] (no specials, no truncation)."""
        texts, scalar = _as_strings(texts, "texts")
        ids = self.wordpiece.tokenize(texts)
        return ids[0] if scalar else ids

    def __call__(self, texts, pair_texts=None, sequence_length: Optional[int] = None) -> dict:
        """Texts (and their pair texts) -> the model's input dict, int32 [N, sequence_length]."""
        n_special = 2 if pair_texts is None else 3
        length = self._check_length(sequence_length if sequence_length is not None else self.sequence_length,
                                    n_special)
        a, scalar = _as_strings(texts, "texts")
        segment_b = None
        if pair_texts is not None:
            b, scalar_b = _as_strings(pair_texts, "pair_texts")
            if scalar_b != scalar or (a.shape[0] is not None and b.shape[0] is not None
                                      and a.shape[0] != b.shape[0]):
                raise TokenizerError(f"texts and pair_texts must have the same length, got shapes "
                                     f"{[] if scalar else a.shape.as_list()} and "
                                     f"{[] if scalar_b else b.shape.as_list()}")
            segment_b = self.wordpiece.tokenize(b)
        packed = pack_inputs(self.wordpiece.tokenize(a), segment_b, length, self.cls_id, self.sep_id,
                             pad_id=self.pad_id, truncation=self.truncation)
        out = {k: tf.cast(v, tf.int32) for k, v in packed.items()}  # [N, length]
        return {k: v[0] for k, v in out.items()} if scalar else out

    # ---------------------------------------------------------------------------- python helpers
    def convert_ids_to_tokens(self, ids):
        """An id or a sequence of ids -> token string(s)."""
        return self.wordpiece.id_to_token(ids)

    def convert_tokens_to_ids(self, tokens):
        """A token or a list of tokens -> id(s) (unknown tokens -> the unknown id)."""
        if isinstance(tokens, str):
            return self.wordpiece.token_to_id(tokens)
        return [self.wordpiece.token_to_id(t) for t in tokens]

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        """Ids -> text with "##" pieces joined (lower-cased, accents stripped: WordPiece is lossy)."""
        specials = ({i for k, i in special_ids(self.wordpiece).items() if k != "unk"}
                    if skip_special_tokens else set())
        ids = [int(i) for i in (ids.numpy() if hasattr(ids, "numpy") else ids)]
        tokens = [self.wordpiece.vocab[i] for i in ids if i not in specials]
        return " ".join(tokens).replace(" ##", "")

    def __repr__(self):
        return (f"FunnelTokenizer(vocab={self.vocab_path!r}, vocab_size={self.vocab_size}, "
                f"lower_case={self.lower_case}, sequence_length={self.sequence_length})")


__all__ = ["FunnelTokenizer", "TokenizerError", "find_vocab", "VOCAB_NAMES"]
