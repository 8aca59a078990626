"""A plain-text corpus as pretraining reads it: input patterns expanded, files checked (empty,
binary, UTF-16), lines decoded (strict, skip-and-count, or a fallback encoding), documents split
at blank lines (or one per file), tokenized in batches and shuffled through a bounded buffer.
`text/pretraining.py` turns these documents into fixed-length examples and records."""

from __future__ import annotations

import codecs
import dataclasses
import random
from typing import Iterable, Iterator, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from funnel_tf.errors import UserError
from funnel_tf.text.errors import DataFormatError, PretrainingDataError
from funnel_tf.text.wordpiece import WordpieceTokenizer

DOC_MODES = ("blank_line", "file")
# Bytes read from the head of each input file to tell text from binary data.
_SNIFF_BYTES = 1 << 16


class MissingInputError(UserError, FileNotFoundError):
    """An input pattern that matches no file."""


# ------------------------------------------------------------------------------ reading text
@dataclasses.dataclass
class ReadStats:
    """Counters shared by the corpus reader and the example writer (end up in the manifest)."""
    files: int = 0
    lines: int = 0
    sentences: int = 0
    documents: int = 0
    tokens: int = 0
    skipped_undecodable_lines: int = 0
    fallback_decoded_lines: int = 0
    bytes_read: int = 0
    truncated_lines: int = 0       # lines longer than one example (their tail is dropped)
    truncated_tokens: int = 0


def expand_inputs(patterns: Sequence[str]) -> List[str]:
    """Globs (or plain paths) -> sorted unique file list; a pattern matching nothing is an error."""
    files = []
    for pattern in patterns:
        matched = sorted(tf.io.gfile.glob(pattern))
        matched = [m for m in matched if not tf.io.gfile.isdir(m)]
        if not matched:
            raise MissingInputError(f"input pattern matched no files: {pattern}")
        files.extend(matched)
    return sorted(set(files))


def _binary_error(path: str, line_no: Optional[int] = None, head: bytes = b"") -> DataFormatError:
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return DataFormatError("is UTF-16 text; convert it to UTF-8 first (e.g. iconv -f UTF-16 "
                               "-t UTF-8)", path=path)
    return DataFormatError("holds NUL bytes: this looks like a binary file, not plain text (pass "
                           "UTF-8 text files, one sentence per line; TFRecords go through "
                           "--train_data_format=tfrecord)", path=path, line=line_no)


def _decode_line(raw: bytes, path: str, line_no: int, stats: ReadStats,
                 skip_undecodable: bool, fallback_encoding: Optional[str]) -> Optional[str]:
    if b"\x00" in raw:
        raise _binary_error(path, line_no)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        if fallback_encoding:
            stats.fallback_decoded_lines += 1
            return raw.decode(fallback_encoding)
        if skip_undecodable:
            stats.skipped_undecodable_lines += 1
            return None
        raise DataFormatError(f"line is not valid UTF-8 ({e.reason} at byte {e.start}); pass "
                              "skip_undecodable_lines=True (--skip_undecodable_lines) to skip and "
                              "count such lines, or fallback_encoding='latin-1'",
                              path=path, line=line_no) from None
    except LookupError:
        raise PretrainingDataError(f"unknown fallback encoding {fallback_encoding!r}") from None


def iter_documents(files: Sequence[str], doc_mode: str = "blank_line", stats: Optional[ReadStats] = None,
                   skip_undecodable_lines: bool = False,
                   fallback_encoding: Optional[str] = None) -> Iterator[List[str]]:
    """Yields documents as lists of stripped non-blank lines, reading one line at a time.

    ``doc_mode="blank_line"``: a blank line (or the end of a file) ends a document.
    ``doc_mode="file"``: each file is one document; blank lines are ignored.
    """
    if doc_mode not in DOC_MODES:
        raise PretrainingDataError(f"doc_mode must be one of {DOC_MODES}, got {doc_mode!r}")
    stats = stats if stats is not None else ReadStats()
    for path in files:
        stats.files += 1
        doc: List[str] = []
        with tf.io.gfile.GFile(path, "rb") as f:
            for line_no, raw in enumerate(f, start=1):
                stats.lines += 1
                stats.bytes_read += len(raw)
                line = _decode_line(raw, path, line_no, stats, skip_undecodable_lines, fallback_encoding)
                if line is None:
                    continue
                line = line.strip()
                if line:
                    doc.append(line)
                elif doc_mode == "blank_line" and doc:
                    stats.documents += 1
                    yield doc
                    doc = []
        if doc:
            stats.documents += 1
            yield doc


def check_text_inputs(files: Sequence[str], fallback_encoding: Optional[str] = None) -> None:
    """Cheap checks before anything is written: every file's head is text (no NUL bytes) and the
    corpus has at least one non-blank line. Raises DataFormatError / PretrainingDataError."""
    if fallback_encoding:
        try:
            codecs.lookup(fallback_encoding)
        except LookupError:
            raise PretrainingDataError(f"unknown fallback encoding {fallback_encoding!r}") from None
    has_text = False
    for path in files:
        with tf.io.gfile.GFile(path, "rb") as f:
            head = f.read(_SNIFF_BYTES)
            if b"\x00" in head:
                raise _binary_error(path, head=head)
            has_text = has_text or bool(head.strip())
            while not has_text:  # a file that starts with a lot of blank space
                chunk = f.read(_SNIFF_BYTES)
                if not chunk:
                    break
                has_text = bool(chunk.strip())
    if not has_text:
        raise PretrainingDataError(
            f"the corpus is empty: {len(files)} file(s) ({', '.join(files[:3])}"
            f"{', ...' if len(files) > 3 else ''}) hold no non-blank line")


def iter_text_batches(files: Sequence[str], batch_lines: int = 4096, **read_kwargs) -> Iterator[List[str]]:
    """Non-blank lines of the corpus in batches (for vocab learning)."""
    batch: List[str] = []
    for doc in iter_documents(files, **read_kwargs):
        for line in doc:
            batch.append(line)
            if len(batch) >= batch_lines:
                yield batch
                batch = []
    if batch:
        yield batch


# ----------------------------------------------------------------------- sentence stream
def _tokenize_lines(tokenizer: WordpieceTokenizer, lines: List[str]) -> List[np.ndarray]:
    ids = tokenizer.tokenize(tf.constant(lines))
    values = ids.flat_values.numpy()
    splits = ids.row_splits.numpy()
    return [values[splits[i]:splits[i + 1]] for i in range(len(lines))]


def iter_tokenized_documents(tokenizer: WordpieceTokenizer, documents: Iterable[List[str]],
                             batch_lines: int = 2048) -> Iterator[List[np.ndarray]]:
    """Documents of text lines -> documents of int32 token arrays (empty sentences dropped).

    Lines are tokenized in batches across document boundaries, so short documents don't
    cost one TF call each.
    """
    pending_docs: List[List[str]] = []
    n_lines = 0

    def flush():
        flat = [line for d in pending_docs for line in d]
        toks = _tokenize_lines(tokenizer, flat) if flat else []
        i = 0
        for d in pending_docs:
            sents = [t for t in toks[i:i + len(d)] if t.size]
            i += len(d)
            if sents:
                yield sents

    for doc in documents:
        pending_docs.append(doc)
        n_lines += len(doc)
        if n_lines >= batch_lines:
            yield from flush()
            pending_docs, n_lines = [], 0
    if pending_docs:
        yield from flush()


def shuffle_documents(docs: Iterable[List[np.ndarray]], rng: random.Random,
                      buffer_tokens: int) -> Iterator[List[np.ndarray]]:
    """Bounded random shuffle of documents: holds at most ~``buffer_tokens`` tokens (plus one doc)."""
    buf: List[List[np.ndarray]] = []
    held = 0
    for doc in docs:
        buf.append(doc)
        held += sum(s.size for s in doc)
        while held > buffer_tokens and buf:
            i = rng.randrange(len(buf))
            buf[i], buf[-1] = buf[-1], buf[i]
            out = buf.pop()
            held -= sum(s.size for s in out)
            yield out
    rng.shuffle(buf)
    yield from buf
