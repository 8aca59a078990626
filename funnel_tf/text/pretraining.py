"""Pretraining data: plain text -> sharded fixed-length TFRecords with their manifest (reading and
decoding the corpus itself: text/corpus.py; the per-host reader: text/pretraining_reader.py).

Writing follows the original Funnel-Transformer ``create_pretrain_data.py``: every non-blank line
is a sentence, documents are concatenated into one stream, and each example is exactly
``[CLS] A [SEP] B [SEP]`` of ``seq_len`` tokens, where A is a run of whole sentences from the
current position and B is either the continuation (label 1) or, with probability 0.5 (or when A
is a single over-long sentence), a random run of sentences from elsewhere (label 0). Pairs are
trimmed longest-first (A on the right, B on a random side). There is no NSP loss; the label is
stored for analysis only.

Differences from the original, all for streaming in constant memory:
- documents are shuffled through a bounded buffer (``shuffle_buffer_tokens``) after a seeded
  shuffle of the input files, instead of a global permutation of all documents;
- a random B is drawn from a ring buffer of the last ``random_b_pool`` sentences read (not from
  the whole corpus), starting at a uniformly chosen sentence.
Everything is seeded, so the same inputs, vocab and seed give byte-identical shards.

Nothing is mixed or half-written: settings, vocab and inputs (empty, binary) are checked before
the first shard is opened; a non-empty output folder is refused unless ``overwrite`` (which
removes only this tool's own shards + manifest); shards are removed again when no example could
be made or writing failed; the manifest is written last and records every input's size and mtime;
the reader (text/pretraining_reader.py) refuses shards that their folder's manifest does not list.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import random
import sys
import time
from typing import Callable, Iterator, List, Optional, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from funnel_tf.errors import UserError
from funnel_tf.text.corpus import (DOC_MODES, ReadStats, check_text_inputs,
                                   expand_inputs, iter_documents, iter_tokenized_documents,
                                   shuffle_documents)
from funnel_tf.text.errors import PretrainingDataError
from funnel_tf.text.packing import A_TYPE_ID, B_TYPE_ID, CLS_TYPE_ID
from funnel_tf.text.wordpiece import WordpieceTokenizer, file_sha256, shared_tokenizer, special_ids

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = "funnel_tf.pretraining.v1"


# --------------------------------------------------------------------------- example maker
@dataclasses.dataclass
class PretrainingExample:
    input_ids: np.ndarray  # int64 [seq_len]
    token_type_ids: np.ndarray  # int64 [seq_len]
    label: int  # 1: B continues A; 0: B is a random span


class ExampleMaker:
    """Turns a stream of sentences (int arrays) into ``[CLS] A [SEP] B [SEP]`` examples.

    Memory: the look-ahead window (~seq_len tokens) plus a ring buffer of ``random_b_pool``
    sentences for random B spans.
    """

    def __init__(self, seq_len: int, cls_id: int, sep_id: int, pad_id: int, seed: int = 0,
                 random_b_pool: int = 20000, random_b_prob: float = 0.5):
        if seq_len < 5:
            raise PretrainingDataError(f"seq_len must be >= 5 ([CLS] A [SEP] B [SEP]), got {seq_len}")
        self.seq_len = seq_len
        self.budget = seq_len - 3  # tokens for A + B
        self.cls_id, self.sep_id, self.pad_id = cls_id, sep_id, pad_id
        self.rng = random.Random(seed)
        self.np_rng = np.random.default_rng(seed)
        self.random_b_prob = random_b_prob
        self.pool: collections.deque = collections.deque(maxlen=max(1, random_b_pool))
        self.window: collections.deque = collections.deque()
        self.window_tokens = 0
        self.num_positive = 0
        self.num_negative = 0
        self.dropped_tokens = 0

    def add_sentence(self, sent: np.ndarray) -> Iterator[PretrainingExample]:
        self.pool.append(sent)
        self.window.append(sent)
        self.window_tokens += sent.size
        # An example needs the first sentence boundary at or past `budget` tokens.
        while self.window_tokens >= self.budget:
            yield self._make_one()

    def finish(self) -> None:
        """End of stream: what is left (< budget tokens) is too short for an example."""
        self.dropped_tokens += self.window_tokens
        self.window.clear()
        self.window_tokens = 0

    def _random_b(self, b_len: int) -> List[np.ndarray]:
        start = self.rng.randrange(len(self.pool))
        out, got = [], 0
        for k in range(len(self.pool)):
            s = self.pool[(start + k) % len(self.pool)]
            out.append(s)
            got += s.size
            if got >= b_len:
                break
        return out

    def _make_one(self) -> PretrainingExample:
        sents = list(self.window)
        # Cut points: sentence ends strictly before the budget (the last sentence crosses it).
        n_cut = len(sents) - 1
        if n_cut == 0 or self.rng.random() < self.random_b_prob:
            label = 0
            k = len(sents) if n_cut == 0 else self.rng.randint(1, n_cut)
            a_sents = sents[:k]
            a_len = sum(s.size for s in a_sents)
            b_sents = self._random_b(max(1, self.budget - a_len))
            consumed = k  # B's text is not consumed: the next example starts after A
        else:
            label = 1
            k = self.rng.randint(1, n_cut)
            a_sents, b_sents = sents[:k], sents[k:]
            consumed = len(sents)
        for _ in range(consumed):
            self.window_tokens -= self.window.popleft().size
        a = np.concatenate(a_sents)
        b = np.concatenate(b_sents)
        a, b, dropped = self._truncate(a, b)
        if label == 1:
            self.dropped_tokens += dropped
            self.num_positive += 1
        else:
            self.num_negative += 1
        return self._pack(a, b, label)

    def _truncate(self, a: np.ndarray, b: np.ndarray):
        """Longest-first (ties trim B); A loses its tail, B a random mix of head and tail."""
        la, lb, m = a.size, b.size, self.budget
        if la + lb <= m:
            return a, b, 0
        half_a = m - m // 2
        new_a = min(la, max(half_a, m - lb))
        new_b = m - new_a
        cut_b = lb - new_b
        cut_left = int(self.np_rng.binomial(cut_b, 0.5))  # each trim picks a side at random
        return a[:new_a], b[cut_left:cut_left + new_b], (la - new_a) + cut_b

    def _pack(self, a: np.ndarray, b: np.ndarray, label: int) -> PretrainingExample:
        ids = np.full(self.seq_len, self.pad_id, np.int64)
        types = np.zeros(self.seq_len, np.int64)
        n = 3 + a.size + b.size
        ids[:n] = np.concatenate([[self.cls_id], a, [self.sep_id], b, [self.sep_id]])
        types[0] = CLS_TYPE_ID
        types[1:a.size + 2] = A_TYPE_ID
        types[a.size + 2:n] = B_TYPE_ID
        return PretrainingExample(ids, types, label)


def _int64_feature(values) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def serialize_example(ex: PretrainingExample) -> bytes:
    feats = {
        "input_ids": _int64_feature(ex.input_ids),
        "token_type_ids": _int64_feature(ex.token_type_ids),
        "label": _int64_feature([ex.label]),
    }
    return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString()


def shard_paths(output_dir: str, num_shards: int, prefix: str = "pretrain") -> List[str]:
    return [os.path.join(output_dir, f"{prefix}-{i:05d}-of-{num_shards:05d}.tfrecord")
            for i in range(num_shards)]


def _default_progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _remove_quietly(paths: Sequence[str], empty_dir: Optional[str] = None) -> None:
    """Remove `paths` (and `empty_dir` if that leaves it empty), ignoring what is already gone."""
    for p in paths:
        try:
            tf.io.gfile.remove(p)
        except tf.errors.NotFoundError:
            pass
    if empty_dir and tf.io.gfile.isdir(empty_dir) and not tf.io.gfile.listdir(empty_dir):
        tf.io.gfile.rmtree(empty_dir)


def _close_all(writers) -> Optional[BaseException]:
    """Close every writer; the first error (not raised: the caller cleans up first), or None."""
    first = None
    for w in writers:
        try:
            w.close()
        except (OSError, tf.errors.OpError) as e:
            first = first or e
    return first


def _own_outputs(output_dir: str, prefix: str) -> List[str]:
    """Files in `output_dir` this tool wrote: the manifest, the shards it lists and any
    `<prefix>-NNNNN-of-NNNNN.tfrecord` (a run that died before writing its manifest)."""
    own = set(tf.io.gfile.glob(os.path.join(output_dir, f"{prefix}-?????-of-?????.tfrecord")))
    manifest_path = os.path.join(output_dir, MANIFEST_NAME)
    if tf.io.gfile.exists(manifest_path):
        own.add(manifest_path)
        try:
            with tf.io.gfile.GFile(manifest_path) as f:
                listed = json.load(f).get("files", [])
            own.update(os.path.join(output_dir, e["path"]) for e in listed
                       if isinstance(e, dict) and isinstance(e.get("path"), str)
                       and "/" not in e["path"] and tf.io.gfile.exists(
                           os.path.join(output_dir, e["path"])))
        except (ValueError, AttributeError, tf.errors.OpError):
            pass  # unreadable manifest: only the name patterns count as ours
    return sorted(own)


def prepare_output_dir(output_dir: str, overwrite: bool, prefix: str = "pretrain") -> None:
    """Refuse a non-empty `output_dir` (old shards would be read with the new ones), or with
    `overwrite` remove this tool's own shards and manifest there (other files stay)."""
    if not tf.io.gfile.exists(output_dir):
        return
    if not tf.io.gfile.isdir(output_dir):
        raise PretrainingDataError(f"--output_dir {output_dir} exists and is not a directory")
    entries = tf.io.gfile.listdir(output_dir)
    if not entries:
        return
    if not overwrite:
        raise PretrainingDataError(
            f"--output_dir {output_dir} is not empty ({len(entries)} entries, e.g. "
            f"{sorted(entries)[0]}); use an empty folder, or pass --overwrite to replace the "
            f"shards and manifest a previous run of this tool wrote there")
    for path in _own_outputs(output_dir, prefix):
        tf.io.gfile.remove(path)


def check_pretraining_settings(seq_len: int, num_shards: int, doc_mode: str = "blank_line",
                               max_examples: Optional[int] = None,
                               prefix: str = "pretrain") -> None:
    """PretrainingDataError for settings that cannot make records (checked before writing)."""
    if not prefix or "/" in prefix or "\\" in prefix or prefix.startswith("."):
        raise PretrainingDataError(f"prefix must be a plain file-name prefix, got {prefix!r}")
    if seq_len < 5:
        raise PretrainingDataError(f"seq_len must be >= 5 ([CLS] A [SEP] B [SEP]), got {seq_len}")
    if num_shards < 1:
        raise PretrainingDataError(f"num_shards must be >= 1, got {num_shards}")
    if doc_mode not in DOC_MODES:
        raise PretrainingDataError(f"doc_mode must be one of {DOC_MODES}, got {doc_mode!r}")
    if max_examples is not None and max_examples < 1:
        raise PretrainingDataError(f"max_examples must be >= 1, got {max_examples}")


def load_tokenizer(vocab_path: str, lower_case: bool = True) -> WordpieceTokenizer:
    """The WordPiece tokenizer of `vocab_path`; a missing, empty or unusable vocab is a
    PretrainingDataError naming the file."""
    if not tf.io.gfile.exists(vocab_path):
        raise PretrainingDataError(f"vocab file not found: {vocab_path}")
    if tf.io.gfile.isdir(vocab_path):
        raise PretrainingDataError(f"vocab {vocab_path} is a directory; pass its vocab.txt")
    try:
        return shared_tokenizer(vocab_path, lower_case=lower_case)
    except UserError:
        raise
    except (ValueError, UnicodeDecodeError, tf.errors.OpError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if not msg.startswith(str(vocab_path)):
            msg = f"{vocab_path}: {msg}"
        raise PretrainingDataError(f"unusable vocab: {msg} (a WordPiece vocab.txt has one token "
                                   f"a line, with [PAD] [UNK] [CLS] [SEP] [MASK])") from None


def input_fingerprints(files: Sequence[str]) -> List[dict]:
    """[{path, size, mtime_ns}] of every input: records made from them are reused only while
    these stay the same."""
    out = []
    for f in files:
        st = tf.io.gfile.stat(f)
        out.append({"path": f, "size": int(st.length), "mtime_ns": int(st.mtime_nsec)})
    return out


def create_pretraining_data(inputs: Sequence[str], output_dir: str, vocab_path: str, seq_len: int = 512,
                            num_shards: int = 8, seed: int = 12345, doc_mode: str = "blank_line",
                            lower_case: bool = True, skip_undecodable_lines: bool = False,
                            fallback_encoding: Optional[str] = None, random_b_pool: int = 20000,
                            shuffle_buffer_tokens: int = 2_000_000, max_examples: Optional[int] = None,
                            prefix: str = "pretrain", progress: Optional[Callable[[str], None]] = _default_progress,
                            progress_every_s: float = 10.0, overwrite: bool = False) -> dict:
    """Writes sharded TFRecords + ``manifest.json`` into ``output_dir``; returns the manifest.

    Examples go to shards round-robin. ``inputs`` are globs; files are read in a seeded random
    order. See the module docstring for the example layout. Settings, vocab and inputs are
    checked before anything is written; a non-empty ``output_dir`` is refused unless
    ``overwrite`` (which removes only this tool's earlier shards and manifest). The manifest is
    written last: shards without one are an unfinished run.
    """
    check_pretraining_settings(seq_len, num_shards, doc_mode, max_examples, prefix)
    files = expand_inputs(inputs)
    tokenizer = load_tokenizer(vocab_path, lower_case=lower_case)
    check_text_inputs(files, fallback_encoding)
    fingerprints = input_fingerprints(files)
    prepare_output_dir(output_dir, overwrite, prefix)
    order = list(files)
    random.Random(seed).shuffle(order)
    stats = ReadStats()
    maker = ExampleMaker(seq_len, tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id, seed=seed + 1,
                         random_b_pool=random_b_pool)
    created_dir = not tf.io.gfile.exists(output_dir)
    tf.io.gfile.makedirs(output_dir)
    paths = shard_paths(output_dir, num_shards, prefix)
    writers = []
    try:
        for p in paths:
            writers.append(tf.io.TFRecordWriter(p))
    except (OSError, tf.errors.OpError) as e:  # e.g. too many open files for num_shards
        for w in writers:
            w.close()
        _remove_quietly(paths, output_dir if created_dir else None)
        raise PretrainingDataError(
            f"cannot open {num_shards} shard files in {output_dir} at once "
            f"({str(e).splitlines()[0] if str(e) else type(e).__name__}); use fewer --num_shards "
            f"(or raise the open-files limit)") from None
    per_shard = [0] * num_shards
    n_examples = 0
    t0 = last = time.time()
    total_bytes = sum(tf.io.gfile.stat(f).length for f in files)

    docs = iter_documents(order, doc_mode, stats, skip_undecodable_lines, fallback_encoding)
    docs = shuffle_documents(iter_tokenized_documents(tokenizer, docs), random.Random(seed + 2),
                             shuffle_buffer_tokens)
    failed = True
    try:
        done = False
        for doc in docs:
            for sent in doc:
                stats.sentences += 1
                stats.tokens += sent.size
                if sent.size > maker.budget:
                    stats.truncated_lines += 1
                    stats.truncated_tokens += sent.size - maker.budget
                for ex in maker.add_sentence(sent):
                    shard = n_examples % num_shards
                    writers[shard].write(serialize_example(ex))
                    per_shard[shard] += 1
                    n_examples += 1
                    if max_examples is not None and n_examples >= max_examples:
                        done = True
                        break
                if done:
                    break
            if progress and time.time() - last >= progress_every_s:
                last = time.time()
                pct = 100.0 * stats.bytes_read / max(total_bytes, 1)
                progress(f"[create-pretraining-data] {stats.files}/{len(files)} files, {pct:.1f}% bytes, "
                         f"{stats.lines} lines, {stats.tokens} tokens, {n_examples} examples, "
                         f"{stats.tokens / (last - t0):.0f} tokens/s")
            if done:
                break
        maker.finish()
        failed = n_examples == 0
    finally:
        close_error = _close_all(writers)  # a full disk often shows only when buffers flush
        if failed or close_error is not None:  # leave no partial shards to be read later
            _remove_quietly(paths, output_dir if created_dir else None)
    if close_error is not None:
        raise close_error
    if n_examples == 0:
        raise PretrainingDataError(
            f"no complete {seq_len}-token example could be made from {len(files)} file(s) "
            f"({stats.tokens} tokens in {stats.sentences} sentences; an example needs about "
            f"{seq_len - 3} tokens): add text or lower the sequence length")

    manifest = {
        "format": FORMAT_VERSION,
        "seq_len": seq_len,
        "num_examples": n_examples,
        "num_positive": maker.num_positive,
        "num_negative": maker.num_negative,
        "files": [{"path": os.path.basename(p), "num_examples": c, "bytes": tf.io.gfile.stat(p).length}
                  for p, c in zip(paths, per_shard)],  # bytes: a truncated copy is refused up front
        "features": {"input_ids": ["int64", seq_len], "token_type_ids": ["int64", seq_len],
                     "label": ["int64", 1]},
        "vocab_path": os.path.abspath(vocab_path),
        "vocab_sha256": file_sha256(vocab_path),
        "vocab_size": tokenizer.vocab_size,
        "special_ids": special_ids(tokenizer),
        "lower_case": lower_case,
        "seed": seed,
        "doc_mode": doc_mode,
        "random_b_pool": random_b_pool,
        "shuffle_buffer_tokens": shuffle_buffer_tokens,
        "inputs": files,
        "input_fingerprints": fingerprints,
        "input_files": stats.files,
        "input_lines": stats.lines,
        "documents": stats.documents,
        "sentences": stats.sentences,
        "tokens": stats.tokens,
        "dropped_tokens": maker.dropped_tokens,
        "truncated_lines": stats.truncated_lines,
        "truncated_tokens": stats.truncated_tokens,
        "skip_undecodable_lines": bool(skip_undecodable_lines),
        "skipped_undecodable_lines": stats.skipped_undecodable_lines,
        "fallback_decoded_lines": stats.fallback_decoded_lines,
        "fallback_encoding": fallback_encoding,
        "seconds": round(time.time() - t0, 2),
    }
    manifest_path = os.path.join(output_dir, MANIFEST_NAME)
    try:
        with tf.io.gfile.GFile(manifest_path, "w") as f:
            f.write(json.dumps(manifest, indent=2))
    except (OSError, tf.errors.OpError):  # shards without their manifest would be refused later
        _remove_quietly(paths + [manifest_path], output_dir if created_dir else None)
        raise
    if stats.truncated_lines:
        note = (f"{stats.truncated_lines} line(s) were longer than one {seq_len}-token example and "
                f"were truncated ({stats.truncated_tokens} tokens dropped); put one sentence per "
                f"line so long text is split across examples")
        if progress is _default_progress:  # the command line: beside its other stderr lines
            progress(f"[create-pretraining-data] warning: {note}")
        else:  # a library caller (pretrain.py's raw-text input): its log, as a warning
            logging.warning("create-pretraining-data: %s", note)
    if progress:
        progress(f"[create-pretraining-data] wrote {n_examples} examples ({maker.num_positive} positive, "
                 f"{maker.num_negative} random B) to {num_shards} shards in {output_dir} "
                 f"from {stats.tokens} tokens in {manifest['seconds']} s")
    return manifest


# ---------------------------------------------------------------------------------- reading


__all__ = ["create_pretraining_data", "ExampleMaker", "MANIFEST_NAME", "prepare_output_dir",
           "load_tokenizer", "input_fingerprints", "check_pretraining_settings"]
