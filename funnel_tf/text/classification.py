"""Sequence classification readers: parsed text examples → fixed-shape `tf.data` features.

What every sequence-classification reader shares (GLUE, glue.py, and the paper's benchmarks,
benchmarks.py, build on it):
1. `TextExamples` + `encode_text_examples`: the generic pipeline. Python only *parses* files into
   lists of strings; tokenization and packing run in-graph (batched `tf.data` map over strings),
   giving per example `input_ids`/`attention_mask`/`token_type_ids` [seq_len] int32, `label`
   (int32, or float32 for regression), `example_weight` float32 (0 for eval padding) and
   `example_index` int32 (position in the examples, -1 for padding).
2. CSV/TSV records with line numbers, any labelled CSV/TSV (`read_labelled_file`) and the original
   repo's web-text cleaning.

Conventions (original `classifier.py`): `[CLS] A [SEP] (B [SEP])`, token types CLS=2, A=0, B=1,
longest-first pair truncation. Unlabelled (test) examples carry label -1 (NaN for regression) so
that training on them by mistake fails loudly.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
import sys
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf

from funnel_tf.text.errors import DataFormatError, MalformedCounter

# Model-input keys every classification/regression feature dict carries.
FEATURE_KEYS = ("input_ids", "attention_mask", "token_type_ids")

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long reviews exceed csv's 128 KiB default


# --------------------------------------------------------------------------------------------
# Parsed examples and the in-graph encoder
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class TextExamples:
    """Parsed single-text or text-pair examples, before tokenization.

    `labels` is int32 [N] (index into `label_names`; -1 when unlabelled) or float32 [N] for
    regression (`label_names is None`; NaN when unlabelled). `ids` are stable per-example ids
    (the file's own index column when it has one, else "<split>-<line>") for prediction files.
    """

    text_a: List[str]
    text_b: Optional[List[str]]
    labels: np.ndarray
    ids: List[str]
    label_names: Optional[Tuple[str, ...]]
    has_labels: bool = True
    num_skipped: int = 0
    source: str = ""

    def __post_init__(self):
        n = len(self.text_a)
        if self.text_b is not None and len(self.text_b) != n:
            raise ValueError(f"text_b has {len(self.text_b)} entries, text_a {n}")
        if len(self.labels) != n or len(self.ids) != n:
            raise ValueError(f"labels/ids must have {n} entries")
        dtype = np.float32 if self.label_names is None else np.int32
        self.labels = np.asarray(self.labels, dtype=dtype)

    def __len__(self) -> int:
        return len(self.text_a)

    @property
    def is_regression(self) -> bool:
        return self.label_names is None

    @property
    def num_classes(self) -> int:
        return 1 if self.label_names is None else len(self.label_names)

    def label_counts(self) -> Dict[str, int]:
        """Label name → count (classification only)."""
        if self.label_names is None:
            raise ValueError("label_counts() is for classification examples")
        counts = np.bincount(self.labels[self.labels >= 0], minlength=len(self.label_names))
        return {name: int(c) for name, c in zip(self.label_names, counts)}


def unlabelled(n: int, regression: bool) -> np.ndarray:
    """Placeholder labels for test splits: -1 (classification) or NaN (regression)."""
    return np.full([n], np.nan, np.float32) if regression else np.full([n], -1, np.int32)


def _pad_count(n: int, multiple: Optional[int]) -> int:
    if not multiple:
        return 0
    if multiple < 1:
        raise ValueError(f"pad_to_multiple_of must be >= 1, got {multiple}")
    return (-n) % multiple


def _encoder(tokenizer, seq_len: int, truncation: str):
    """The in-graph tokenize-and-pack function of a batch of string columns, shared by every
    dataset of the same tokenizer, seq_len and truncation (packing.traced_per_tokenizer)."""
    from funnel_tf.text.packing import pack_inputs, traced_per_tokenizer

    def make(get_tokenizer):
        def encode(batch):
            tok = get_tokenizer()
            seg_a = tok.tokenize(batch["text_a"])                       # [b, (t)]
            seg_b = tok.tokenize(batch["text_b"]) if "text_b" in batch else None
            packed = pack_inputs(seg_a, seg_b, seq_len, tok.cls_id, tok.sep_id,
                                 pad_id=tok.pad_id, truncation=truncation)
            out = {k: tf.ensure_shape(tf.cast(packed[k], tf.int32), [None, seq_len])
                   for k in FEATURE_KEYS}                               # [b, seq_len] each
            out["label"] = batch["label"]
            out["example_weight"] = batch["example_weight"]
            out["example_index"] = batch["example_index"]
            return out
        return encode

    return traced_per_tokenizer(tokenizer, ("text", seq_len, truncation), make)


def encode_text_examples(examples: TextExamples, tokenizer, seq_len: int, *,
                         batch_size: Optional[int] = None,
                         pad_to_multiple_of: Optional[int] = None,
                         shuffle: bool = False, seed: Optional[int] = None, repeat: bool = False,
                         truncation: str = "longest_first",
                         tokenize_chunk: int = 256) -> tf.data.Dataset:
    """Tokenizes and packs `examples` in-graph into a dataset of fixed-shape feature dicts.

    Elements: input_ids/attention_mask/token_type_ids [seq_len] int32, label [] int32|float32,
    example_weight [] float32, example_index [] int32 — or [batch_size, ...] when `batch_size` is
    given (always `drop_remainder=True`, so shapes are static for TPU/XLA). For evaluation pass
    `pad_to_multiple_of=global_batch` so no real example is dropped: padding examples are
    `[CLS] [SEP]` with example_weight 0, example_index -1 and label 0.
    """
    if seq_len < 3 + (examples.text_b is not None):
        raise ValueError(f"seq_len={seq_len} leaves no room for text")
    n_pad = _pad_count(len(examples), pad_to_multiple_of)
    labels = np.concatenate([examples.labels,
                             np.zeros([n_pad], examples.labels.dtype)])
    columns = {
        "text_a": np.array(list(examples.text_a) + [""] * n_pad, dtype=object),
        "label": labels,
        "example_weight": np.concatenate([np.ones([len(examples)], np.float32),
                                          np.zeros([n_pad], np.float32)]),
        "example_index": np.concatenate([np.arange(len(examples), dtype=np.int32),
                                         np.full([n_pad], -1, np.int32)]),
    }
    if examples.text_b is not None:
        columns["text_b"] = np.array(list(examples.text_b) + [""] * n_pad, dtype=object)
    if len(labels) == 0:
        raise ValueError(f"no examples to encode ({examples.source or 'empty input'})")

    ds = tf.data.Dataset.from_tensor_slices(columns)
    if shuffle:
        ds = ds.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()

    encode = _encoder(tokenizer, seq_len, truncation)
    ds = ds.batch(tokenize_chunk).map(encode, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    if batch_size:
        ds = ds.batch(batch_size, drop_remainder=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def dataset_to_numpy(ds: tf.data.Dataset, chunk: int = 1024) -> Dict[str, np.ndarray]:
    """Collects a finite dataset of (unbatched) fixed-shape dicts into numpy arrays [N, ...]."""
    parts: Dict[str, list] = {}
    for batch in ds.batch(chunk).as_numpy_iterator():
        for k, v in batch.items():
            parts.setdefault(k, []).append(v)
    if not parts:
        raise ValueError("dataset is empty")
    return {k: np.concatenate(v, axis=0) for k, v in parts.items()}


# --------------------------------------------------------------------------------------------
# Web-text cleaning (original repo's `clean_web_text`)
# --------------------------------------------------------------------------------------------
def clean_web_text(text: str) -> str:
    """The original repo's cleaning for IMDB/Yelp/Amazon/AG/DBpedia text.

    `<br />` and `<p>` → space, `&quot;` → `"`, `<a href=...>` and `</a>` dropped, the literal
    two characters `\\n` and any remaining backslash (the CSVs' newline quirk) → space, and
    whitespace runs collapsed. (The original truncates the text at an unclosed `<a href=`; here
    only the dangling tag opener is dropped.)
    """
    text = text.replace("<br />", " ").replace("&quot;", '"').replace("<p>", " ")
    if "<a href=" in text:
        while True:
            start = text.find("<a href=")
            if start < 0:
                break
            end = text.find(">", start)
            cut = end + 1 if end >= 0 else start + len("<a href=")
            text = text[:start] + text[cut:]
        text = text.replace("</a>", "")
    text = text.replace("\\n", " ").replace("\\", " ")
    return " ".join(text.split())


# --------------------------------------------------------------------------------------------
# Low-level record readers with line numbers
# --------------------------------------------------------------------------------------------
def _open_text(path: str):
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"data file not found: {path}")
    return tf.io.gfile.GFile(path, "rb")


def iter_csv_records(path: str, delimiter: str = ",", quoting: int = csv.QUOTE_MINIMAL,
                     encoding: str = "utf-8-sig") -> Iterator[Tuple[int, List[str]]]:
    """Yields (first line number, fields) per CSV record; quoted fields may span lines.

    Raises `DataFormatError` (file + line) for undecodable bytes or broken quoting. Blank lines
    are skipped.
    """
    with _open_text(path) as f:
        raw = f.read()
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise DataFormatError(f"not valid {encoding}: {e.reason}", path, line) from None
    if quoting == csv.QUOTE_NONE:  # TSV convention: records are exactly the \n-separated lines
        for i, line in enumerate(text.split("\n")):
            line = line[:-1] if line.endswith("\r") else line
            if line:
                yield i + 1, line.split(delimiter)
        return
    # newline="": split records only at \r, \n, \r\n (never at \x0b, \x1c, \u2028 ...).
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quotechar='"',
                        quoting=quoting,
                        strict=True)
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise DataFormatError(f"malformed CSV: {e}", path, start) from None
        if row:
            yield start, row
        start = reader.line_num + 1


# --------------------------------------------------------------------------------------------
# Any labelled CSV/TSV
# --------------------------------------------------------------------------------------------
ColumnRef = Union[int, str]


def _resolve_column(ref: Optional[ColumnRef], header: Optional[List[str]], path: str
                    ) -> Optional[int]:
    if ref is None or isinstance(ref, int):
        return ref
    if header is None:
        raise ValueError(f"column {ref!r} given by name but {path} is read without a header")
    if ref not in header:
        raise DataFormatError(f"no column named {ref!r} in header {header}", path, 1)
    return header.index(ref)


def read_labelled_file(path: str, *, text_a_column: ColumnRef, label_column: Optional[ColumnRef],
                       text_b_column: Optional[ColumnRef] = None,
                       label_names: Optional[Sequence[str]] = None, regression: bool = False,
                       delimiter: Optional[str] = None, has_header: bool = True,
                       quoting: Optional[int] = None, num_columns: Optional[int] = None,
                       id_column: Optional[ColumnRef] = None, clean: bool = False,
                       skip_malformed: bool = False, split_name: str = "") -> TextExamples:
    """Reads any labelled CSV/TSV: columns by index or header name.

    `delimiter` defaults to tab for .tsv files (with the GLUE `QUOTE_NONE` convention: raw quotes
    stay in the text) and comma otherwise (standard CSV quoting). `label_names` fixes the label
    order; when None for classification they are the sorted distinct labels of this file — pass
    the train file's `label_names` when reading dev/test. `label_column=None` reads an unlabelled
    (test) file. Every record must have `num_columns` fields (default: the header's, or the
    first record's).
    """
    if delimiter is None:
        delimiter = "\t" if str(path).endswith(".tsv") else ","
    if quoting is None:
        quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    counter = MalformedCounter(skip_malformed)
    records = iter_csv_records(path, delimiter, quoting)
    header = None
    if has_header:
        first = next(records, None)
        if first is None:
            raise DataFormatError("file is empty (expected a header)", path, 1)
        header = first[1]
        num_columns = num_columns or len(header)
    cols = {name: _resolve_column(ref, header, path) for name, ref in
            (("a", text_a_column), ("b", text_b_column), ("label", label_column),
             ("id", id_column))}
    needed = max(c if c >= 0 else -c - 1 for c in cols.values() if c is not None) + 1

    text_a, text_b, raw_labels, ids = [], [], [], []
    split_name = split_name or os.path.splitext(os.path.basename(path))[0]
    for line, row in records:
        if num_columns is None:
            num_columns = len(row)
        if len(row) != num_columns or len(row) < needed:
            out_of_range = [f"{name}_column {c}" for name, c in (
                ("text_a", cols["a"]), ("text_b", cols["b"]), ("label", cols["label"]),
                ("id", cols["id"])) if c is not None and not -len(row) <= c < len(row)]
            counter.report(DataFormatError(
                f"expected {num_columns} columns, found {len(row)}" if len(row) != num_columns
                else f"{', '.join(out_of_range)}: column index out of range for a row of "
                     f"{len(row)} columns (indices 0..{len(row) - 1})", path, line))
            continue
        a = row[cols["a"]]
        b = row[cols["b"]] if cols["b"] is not None else None
        if clean:
            a = clean_web_text(a)
            b = clean_web_text(b) if b is not None else None
        raw = row[cols["label"]].strip() if cols["label"] is not None else None
        if raw is not None:
            try:
                _check_label(raw, label_names, regression)
            except ValueError as e:
                counter.report(DataFormatError(str(e), path, line))
                continue
        text_a.append(a)
        text_b.append(b)
        raw_labels.append(raw)
        ids.append(row[cols["id"]] if cols["id"] is not None else f"{split_name}-{line}")
    counter.log(str(path))

    has_labels = cols["label"] is not None
    if regression:
        names = None
        labels = (np.array([float(x) for x in raw_labels], np.float32) if has_labels
                  else unlabelled(len(ids), True))
    else:
        names = tuple(label_names) if label_names is not None else tuple(
            sorted(set(raw_labels), key=_label_sort_key)) if has_labels else None
        if names is None:
            raise ValueError("label_names are required to read an unlabelled classification file")
        index = {name: i for i, name in enumerate(names)}
        labels = (np.array([index[x] for x in raw_labels], np.int32) if has_labels
                  else unlabelled(len(ids), False))
    return TextExamples(text_a=text_a, text_b=text_b if cols["b"] is not None else None,
                        labels=labels, ids=ids, label_names=names, has_labels=has_labels,
                        num_skipped=counter.count, source=str(path))


def _label_sort_key(x: str):
    try:
        return (0, float(x), x)
    except ValueError:
        return (1, 0.0, x)


def _check_label(raw: str, label_names: Optional[Sequence[str]], regression: bool) -> None:
    if regression:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"label {raw!r} is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"label {raw!r} is not finite")
    elif label_names is not None and raw not in label_names:
        raise ValueError(f"label {raw!r} not in {list(label_names)}")
