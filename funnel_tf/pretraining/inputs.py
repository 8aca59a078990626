"""Pretraining input planned for a run: TFRecords (or raw text turned into TFRecords once, cached
in the run folder) + vocab + online masking -> the `PretrainingInputSpec` that the pretraining
task reads (`Task.build_inputs`, tasks/inputs.py) into per-replica feature batches.

The text pipeline itself lives in `funnel_tf.text` (records, reader, masker); this module only
decides what to read and checks that the records, the vocab and the model agree.
"""

from __future__ import annotations

import dataclasses
import os
from typing import List, Optional, Sequence

import tensorflow as tf
from absl import logging

from funnel_tf.config import FunnelConfig
from funnel_tf.errors import UserError
from funnel_tf.tasks.inputs import PretrainingInputSpec
from funnel_tf.text import corpus, masking, pretraining, pretraining_reader
from funnel_tf.text.wordpiece import WordpieceTokenizer, file_sha256

DATA_FORMATS = ("auto", "tfrecord", "text")
TEXT_SUFFIXES = (".txt", ".text", ".raw")


class InputError(UserError, ValueError):
    """Training data that cannot be used as given; the message names the file and the fix."""


def expand(patterns: Sequence[str]) -> List[str]:
    """Comma-separated globs -> sorted existing files (error naming the patterns if none).
    Directories are not inputs: a pattern matching only directories is an error too."""
    pats = [p.strip() for item in patterns for p in str(item).split(",") if p.strip()]
    if not pats:
        raise InputError("no training data given (--train_data is empty)")
    try:
        matched = {f for p in pats for f in tf.io.gfile.glob(p)}
    except tf.errors.OpError as e:
        raise InputError(f"cannot list --train_data {pats}: {str(e).splitlines()[0]}") from None
    files = sorted(f for f in matched if not tf.io.gfile.isdir(f))
    if not files:
        what = " (only directories; pass file globs such as dir/*.tfrecord)" if matched else ""
        raise InputError(f"no files match {pats}{what}")
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
        return pretraining_reader.read_manifest_file(path)
    return None


def _cache_key(text_files: Sequence[str], vocab_path: str, seq_len: int, seed: int,
               num_shards: int, skip_undecodable_lines: bool,
               fallback_encoding: Optional[str]) -> dict:
    """What shapes records made from raw text: every input file (path, size, mtime), the vocab,
    and the settings. Records in the cache are reused only when all of it is unchanged."""
    return {"format": pretraining.FORMAT_VERSION, "seq_len": seq_len, "seed": seed,
            "num_shards": num_shards, "vocab_sha256": file_sha256(vocab_path),
            "skip_undecodable_lines": bool(skip_undecodable_lines),
            "fallback_encoding": fallback_encoding,
            "inputs": pretraining.input_fingerprints(sorted(text_files))}


def _manifest_key(m: dict) -> dict:
    return {"format": m.get("format"), "seq_len": m.get("seq_len"), "seed": m.get("seed"),
            "num_shards": len(m.get("files", [])), "vocab_sha256": m.get("vocab_sha256"),
            "skip_undecodable_lines": m.get("skip_undecodable_lines"),
            "fallback_encoding": m.get("fallback_encoding"),
            "inputs": sorted(m.get("input_fingerprints") or [], key=lambda e: e.get("path", ""))}


def records_from_text(text_files: Sequence[str], vocab_path: str, seq_len: int, output_dir: str,
                      seed: int, num_shards: int = 4, skip_undecodable_lines: bool = False,
                      fallback_encoding: Optional[str] = None) -> List[str]:
    """TFRecords for `text_files` in `output_dir` (a cache owned by the run): reused when its
    manifest records the same inputs (size + mtime of every file), vocab and settings, otherwise
    rebuilt in place. Returns the shard paths."""
    key = _cache_key(text_files, vocab_path, seq_len, seed, num_shards, skip_undecodable_lines,
                     fallback_encoding)
    manifest_path = os.path.join(output_dir, pretraining.MANIFEST_NAME)
    if tf.io.gfile.exists(manifest_path):
        try:
            m = pretraining_reader.read_manifest_file(manifest_path)
        except UserError:
            m = {}
        shards = [os.path.join(output_dir, e["path"]) for e in m.get("files", [])
                  if isinstance(e, dict) and isinstance(e.get("path"), str)]
        if (_manifest_key(m) == key and m.get("num_examples", 0) > 0
                and all(tf.io.gfile.exists(p) for p in shards)):
            logging.info("reusing pretraining records in %s (%d examples)", output_dir,
                         m["num_examples"])
            return shards
        logging.info("the inputs, vocab or settings changed since the records in %s were made: "
                     "rebuilding them", output_dir)
    logging.info("turning %d text file(s) into pretraining records in %s", len(text_files),
                 output_dir)
    m = pretraining.create_pretraining_data(list(text_files), output_dir, vocab_path,
                                            seq_len=seq_len, num_shards=num_shards, seed=seed,
                                            skip_undecodable_lines=skip_undecodable_lines,
                                            fallback_encoding=fallback_encoding,
                                            progress=lambda msg: logging.info("%s", msg),
                                            overwrite=True)
    return [os.path.join(output_dir, e["path"]) for e in m["files"]]


@dataclasses.dataclass
class PretrainingInput:
    """Materialised input: what the task reads (`spec`, for `Task.build_inputs`: record files,
    masker, batch, seed) and what the run reports (tokenizer, number of examples)."""

    spec: PretrainingInputSpec
    tokenizer: WordpieceTokenizer
    num_examples: Optional[int] = None

    @property
    def files(self) -> List[str]:
        return list(self.spec.files)


@dataclasses.dataclass
class InputPlan:
    """Pretraining input resolved and checked, with nothing written yet (`plan_pretraining_input`);
    `build_pretraining_input` materialises it (raw text -> records under work_dir)."""

    files: List[str]              # record files, or text files still to be turned into records
    data_format: str              # "tfrecord" | "text"
    vocab: str
    tokenizer: WordpieceTokenizer
    masker: masking.MlmMasker
    seq_len: int
    manifest: Optional[dict] = None


def _check_first_record(path: str, seq_len: int) -> bool:
    """Read one record of `path` as a pretraining example: a text file passed as TFRecords, or
    records of another layout, fail here with the file's name instead of mid-training. Returns
    whether the file holds a record at all."""
    try:
        for raw in tf.data.TFRecordDataset(path).take(1):
            pretraining_reader.parse_pretraining_batch(tf.reshape(raw, [1]), seq_len)
            return True
        return False
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{path}: not a pretraining TFRecord of seq_len {seq_len} ({first[:200]}); "
                         f"make records with `python -m funnel_tf.text create-pretraining-data` or "
                         f"pass --train_data_format=text for plain text") from None


def find_corrupt_record_file(files: Sequence[str], budget_s: float = 120.0):
    """Read `files` record by record until one fails: -> (path, TF's words) or None. Used after
    a mid-training DataLossError to name the file; stops after `budget_s` seconds (None then:
    a pod-sized input is not re-read in full to improve an error message)."""
    import time

    deadline = time.monotonic() + budget_s
    for path in files:
        try:
            for _ in tf.data.TFRecordDataset(path).batch(1024):
                if time.monotonic() > deadline:
                    return None
        except tf.errors.DataLossError as e:
            from funnel_tf.engine.loop import data_loss_detail

            return path, data_loss_detail(e)
        except tf.errors.OpError:
            continue  # unreadable for another reason: not what we are looking for
    return None


def plan_pretraining_input(train_data: Sequence[str], seq_len: int, config: FunnelConfig,
                           vocab: Optional[str] = None, data_format: str = "auto",
                           masking_strategy: str = "single_token",
                           num_predict: Optional[int] = None,
                           fallback_encoding: Optional[str] = None) -> InputPlan:
    """Resolve and check `train_data` (files, format, manifest, vocab, masking) without writing
    anything: every user error in the input surfaces here, before a run touches its model_dir."""
    if data_format not in DATA_FORMATS:
        raise InputError(f"train_data_format must be one of {DATA_FORMATS}, got {data_format!r}")
    config.check_seq_len(seq_len)
    files = expand(train_data)
    fmt = detect_format(files) if data_format == "auto" else data_format
    if fmt == "tfrecord":  # a glob like records/* also matches the manifest: metadata, not data
        files = [f for f in files if os.path.basename(f) != pretraining.MANIFEST_NAME]
        if not files:
            raise InputError(f"--train_data {list(train_data)} matches only {pretraining.MANIFEST_NAME}")
    manifest = read_manifest(files) if fmt == "tfrecord" else None
    if vocab is None:
        if manifest is None or not manifest.get("vocab_path"):
            raise InputError("no --vocab given and no manifest.json with a vocab_path beside "
                             f"{files[0]}")
        vocab = manifest["vocab_path"]
        if not tf.io.gfile.exists(vocab):
            raise InputError(f"the vocab the records were made with, {vocab} (from the manifest "
                             f"beside {files[0]}), is not found here; pass --vocab")
    tokenizer = pretraining.load_tokenizer(vocab)
    if fmt == "tfrecord":
        pretraining_reader.check_files_against_manifests(files)
        if manifest is not None:
            if manifest.get("vocab_sha256") and manifest["vocab_sha256"] != file_sha256(vocab):
                raise InputError(f"{vocab} is not the vocab the records were made with "
                                 f"({manifest.get('vocab_path')}, sha256 "
                                 f"{manifest['vocab_sha256'][:12]}…)")
            if manifest.get("seq_len") not in (None, seq_len):
                raise InputError(f"records in {os.path.dirname(files[0])} have seq_len "
                                 f"{manifest['seq_len']}, but --seq_len is {seq_len}")
        sample = files[:: max(1, len(files) // 8)][:8]  # a few shards, spread over the list
        found = [_check_first_record(f, seq_len) for f in sample]
        if not any(found) and not any(_check_first_record(f, seq_len) for f in files
                                      if f not in sample):
            raise InputError(f"--train_data {list(train_data)}: the {len(files)} record file(s) "
                             f"hold no example")
    else:
        corpus.check_text_inputs(files, fallback_encoding)
    stride = config.upsample_stride if (config.separate_cls and config.truncate_seq) else 1
    try:
        masker = masking.MlmMasker.from_tokenizer(tokenizer, seq_len, num_predict=num_predict,
                                                  strategy=masking_strategy,
                                                  truncate_stride=stride if stride < seq_len else 1)
    except UserError:
        raise
    except ValueError as e:
        raise InputError(f"masking: {e}") from None
    return InputPlan(files=files, data_format=fmt, vocab=vocab, tokenizer=tokenizer,
                     masker=masker, seq_len=seq_len, manifest=manifest)


def materialize_input(plan: InputPlan, global_batch_size: int, seed: int = 0,
                      deterministic: bool = True, work_dir: Optional[str] = None,
                      can_write: bool = True, skip_undecodable_lines: bool = False,
                      fallback_encoding: Optional[str] = None) -> PretrainingInput:
    """The PretrainingInput of a checked plan (its `spec` is what the task reads); raw text
    becomes records in `<work_dir>/data/seq<L>` (reused while inputs, vocab and settings are
    unchanged)."""
    files, manifest = plan.files, plan.manifest
    if plan.data_format == "text":
        if not can_write:
            raise InputError("raw-text input is converted by the chief only; for multi-worker or "
                             "TPU-pod runs create records first with `python -m funnel_tf.text "
                             "create-pretraining-data`")
        if work_dir is None:
            raise InputError("raw-text input needs a work directory for its records")
        out = os.path.join(work_dir, "data", f"seq{plan.seq_len}")
        files = records_from_text(files, plan.vocab, plan.seq_len, out, seed,
                                  skip_undecodable_lines=skip_undecodable_lines,
                                  fallback_encoding=fallback_encoding)
        manifest = read_manifest(files)
    spec = PretrainingInputSpec(files=tuple(files), seq_len=plan.seq_len,
                                global_batch_size=global_batch_size, masker=plan.masker,
                                seed=seed, deterministic=deterministic)
    return PretrainingInput(spec=spec, tokenizer=plan.tokenizer,
                            num_examples=manifest.get("num_examples") if manifest else None)


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
    PretrainingInput, checking vocab, sequence length and pooling compatibility first."""
    plan = plan_pretraining_input(train_data, seq_len, config, vocab=vocab,
                                  data_format=data_format, masking_strategy=masking_strategy,
                                  num_predict=num_predict, fallback_encoding=fallback_encoding)
    return materialize_input(plan, global_batch_size, seed=seed, deterministic=deterministic,
                             work_dir=work_dir, can_write=can_write,
                             skip_undecodable_lines=skip_undecodable_lines,
                             fallback_encoding=fallback_encoding)
