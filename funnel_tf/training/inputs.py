"""Pretraining input for the loop: TFRecords (or raw text turned into TFRecords once) + vocab +
online masking -> a `dataset_fn(InputContext)` of per-replica feature batches.

The text pipeline itself lives in `funnel_tf.text` (records, reader, masker); this module only
decides what to read, checks that the records, the vocab and the model agree, and wires them up.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable, List, Optional, Sequence

import tensorflow as tf
from absl import logging

from funnel_tf.config import FunnelConfig
from funnel_tf.errors import UserError
from funnel_tf.text import masking, pretraining
from funnel_tf.text.wordpiece import WordpieceTokenizer, file_sha256

DATA_FORMATS = ("auto", "tfrecord", "text")
TEXT_SUFFIXES = (".txt", ".text", ".raw")


class InputError(UserError, ValueError):
    """Training data that cannot be used as given; the message names the file and the fix."""


def expand(patterns: Sequence[str]) -> List[str]:
    """Comma-separated globs -> sorted existing files (error naming the patterns if none)."""
    pats = [p.strip() for item in patterns for p in str(item).split(",") if p.strip()]
    files = sorted({f for p in pats for f in tf.io.gfile.glob(p)})
    if not files:
        raise InputError(f"no files match {pats}")
    return files


def detect_format(files: Sequence[str]) -> str:
    """"tfrecord" if the files look like records (name or a manifest beside them), "text" if they
    all look like text; anything else is ambiguous and needs --train_data_format."""
    def is_record(f):
        return ".tfrecord" in os.path.basename(f) or tf.io.gfile.exists(
            os.path.join(os.path.dirname(f), pretraining.MANIFEST_NAME))
    if all(is_record(f) for f in files):
        return "tfrecord"
    if all(f.lower().endswith(TEXT_SUFFIXES) for f in files):
        return "text"
    raise InputError(f"cannot tell whether {files[:3]} are TFRecords or text; pass "
                     f"--train_data_format=tfrecord or text")


def read_manifest(files: Sequence[str]) -> Optional[dict]:
    dirs = sorted({os.path.dirname(f) for f in files})
    path = os.path.join(dirs[0], pretraining.MANIFEST_NAME)
    if len(dirs) == 1 and tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path) as f:
            return json.load(f)
    return None


def records_from_text(text_files: Sequence[str], vocab_path: str, seq_len: int, output_dir: str,
                      seed: int, num_shards: int = 4, skip_undecodable_lines: bool = False,
                      fallback_encoding: Optional[str] = None) -> List[str]:
    """Write (or reuse, when the manifest says the same inputs/vocab/seq_len/seed) TFRecords for
    `text_files` in `output_dir`; returns the shard paths."""
    manifest_path = os.path.join(output_dir, pretraining.MANIFEST_NAME)
    if tf.io.gfile.exists(manifest_path):
        with tf.io.gfile.GFile(manifest_path) as f:
            m = json.load(f)
        if (m.get("seq_len") == seq_len and m.get("seed") == seed
                and m.get("vocab_sha256") == file_sha256(vocab_path)
                and sorted(m.get("inputs", [])) == sorted(text_files)):
            logging.info("reusing pretraining records in %s (%d examples)", output_dir,
                         m["num_examples"])
            return [os.path.join(output_dir, e["path"]) for e in m["files"]]
        raise InputError(f"{output_dir} holds records made from other inputs/vocab/seq_len/seed; "
                         f"remove it or use another --model_dir")
    logging.info("turning %d text file(s) into pretraining records in %s", len(text_files),
                 output_dir)
    m = pretraining.create_pretraining_data(list(text_files), output_dir, vocab_path,
                                            seq_len=seq_len, num_shards=num_shards, seed=seed,
                                            skip_undecodable_lines=skip_undecodable_lines,
                                            fallback_encoding=fallback_encoding,
                                            progress=lambda msg: logging.info("%s", msg))
    if m["num_examples"] == 0:
        raise InputError(f"{text_files}: no complete {seq_len}-token example could be made")
    return [os.path.join(output_dir, e["path"]) for e in m["files"]]


@dataclasses.dataclass
class PretrainingInput:
    """Resolved input: record files, tokenizer, masker; `dataset_fn` feeds `loop.Trainer`."""

    files: List[str]
    tokenizer: WordpieceTokenizer
    masker: masking.MlmMasker
    seq_len: int
    global_batch_size: int
    seed: int
    deterministic: bool
    num_examples: Optional[int] = None

    def dataset_fn(self, ctx: tf.distribute.InputContext) -> tf.data.Dataset:
        """Per-replica batches for this input pipeline (files sharded by pipeline id).

        deterministic=True masks batches one at a time so the masking RNG sequence is the same on
        every run with the same seed: that is what makes a replayed resume exact (the masker uses
        stateful random ops whose state tf.data cannot checkpoint). False masks in parallel.
        """
        ds = pretraining.make_pretraining_dataset(
            self.files, self.seq_len, self.global_batch_size, input_context=ctx, seed=self.seed,
            masker=None if self.deterministic else self.masker)
        if self.deterministic:
            ds = ds.map(self.masker, num_parallel_calls=None).prefetch(tf.data.AUTOTUNE)
        return ds


def build_pretraining_input(train_data: Sequence[str], seq_len: int, global_batch_size: int,
                            config: FunnelConfig, vocab: Optional[str] = None,
                            data_format: str = "auto", work_dir: Optional[str] = None,
                            masking_strategy: str = "single_token",
                            num_predict: Optional[int] = None, seed: int = 0,
                            deterministic: bool = True, can_write: bool = True,
                            skip_undecodable_lines: bool = False,
                            fallback_encoding: Optional[str] = None) -> PretrainingInput:
    """Resolve `train_data` (globs of TFRecords from `python -m funnel_tf.text
    create-pretraining-data`, or plain text converted once into `<work_dir>/data`) into a
    PretrainingInput, checking vocab, sequence length and pooling compatibility."""
    if data_format not in DATA_FORMATS:
        raise InputError(f"train_data_format must be one of {DATA_FORMATS}, got {data_format!r}")
    config.check_seq_len(seq_len)
    files = expand(train_data)
    fmt = detect_format(files) if data_format == "auto" else data_format
    manifest = read_manifest(files) if fmt == "tfrecord" else None
    if vocab is None:
        if manifest is None or not manifest.get("vocab_path"):
            raise InputError("no --vocab given and no manifest.json with a vocab_path beside "
                             f"{files[0]}")
        vocab = manifest["vocab_path"]
    if not tf.io.gfile.exists(vocab):
        raise InputError(f"vocab file not found: {vocab}")
    if manifest is not None:
        if manifest.get("vocab_sha256") and manifest["vocab_sha256"] != file_sha256(vocab):
            raise InputError(f"{vocab} is not the vocab the records were made with "
                             f"({manifest.get('vocab_path')}, sha256 {manifest['vocab_sha256'][:12]}…)")
        if manifest.get("seq_len") not in (None, seq_len):
            raise InputError(f"records in {os.path.dirname(files[0])} have seq_len "
                             f"{manifest['seq_len']}, but --seq_len is {seq_len}")
    if fmt == "text":
        if not can_write:
            raise InputError("raw-text input is converted by the chief only; for multi-worker or "
                             "TPU-pod runs create records first with `python -m funnel_tf.text "
                             "create-pretraining-data`")
        if work_dir is None:
            raise InputError("raw-text input needs a work directory for its records")
        out = os.path.join(work_dir, "data", f"seq{seq_len}")
        files = records_from_text(files, vocab, seq_len, out, seed,
                                  skip_undecodable_lines=skip_undecodable_lines,
                                  fallback_encoding=fallback_encoding)
        manifest = read_manifest(files)
    tokenizer = WordpieceTokenizer(vocab)
    stride = config.upsample_stride if (config.separate_cls and config.truncate_seq) else 1
    masker = masking.MlmMasker.from_tokenizer(tokenizer, seq_len, num_predict=num_predict,
                                              strategy=masking_strategy,
                                              truncate_stride=stride if stride < seq_len else 1)
    return PretrainingInput(files=files, tokenizer=tokenizer, masker=masker, seq_len=seq_len,
                            global_batch_size=global_batch_size, seed=seed,
                            deterministic=deterministic,
                            num_examples=manifest.get("num_examples") if manifest else None)
