"""The per-host reader of pretraining records (written by text/pretraining.py).

``make_pretraining_dataset`` shards files across hosts with ``tf.distribute.InputContext``, shuffles
each epoch with stateless keys of (seed, epoch), repeats, batches with ``drop_remainder=True`` and
optionally applies an online masker keyed on (seed, batch index): it can start at any batch in
O(one epoch) of raw reads, which is what a resumed run does. Shards their folder's manifest does
not list are refused.
"""

from __future__ import annotations

import collections
import inspect
import json
import os
import random
from typing import Callable, List, Optional, Sequence

import tensorflow as tf

from funnel_tf.text import masking
from funnel_tf.text.corpus import MissingInputError
from funnel_tf.text.errors import PretrainingDataError
from funnel_tf.text.pretraining import MANIFEST_NAME

def parse_pretraining_batch(serialized: tf.Tensor, seq_len: int, pad_id: int = 0) -> dict:
    """Serialized examples [B] -> int32 ``input_ids`` / ``attention_mask`` / ``token_type_ids`` [B, seq_len]."""
    spec = {
        "input_ids": tf.io.FixedLenFeature([seq_len], tf.int64),
        "token_type_ids": tf.io.FixedLenFeature([seq_len], tf.int64),
    }
    parsed = tf.io.parse_example(serialized, spec)
    input_ids = tf.cast(parsed["input_ids"], tf.int32)
    return {
        "input_ids": input_ids,
        "attention_mask": tf.cast(tf.not_equal(input_ids, pad_id), tf.int32),
        "token_type_ids": tf.cast(parsed["token_type_ids"], tf.int32),
    }


def read_manifest_file(path: str) -> dict:
    """A manifest.json as a dict; an unreadable one is a PretrainingDataError naming it."""
    try:
        with tf.io.gfile.GFile(path) as f:
            m = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise PretrainingDataError(f"{path}: unreadable manifest ({e}); rewrite the records with "
                                   f"`python -m funnel_tf.text create-pretraining-data`") from None
    if not isinstance(m, dict) or not isinstance(m.get("files", []), list):
        raise PretrainingDataError(f"{path}: not a pretraining manifest (expected an object with "
                                   f"a 'files' list)")
    return m


def check_files_against_manifests(files: Sequence[str], seq_len: Optional[int] = None) -> None:
    """Every record file must be listed by the manifest.json of its folder (when there is one),
    and that manifest's seq_len must be ``seq_len``: old shards left beside new ones, or records
    of another length, are refused instead of being read silently."""
    by_dir: dict = collections.defaultdict(list)
    for f in files:
        by_dir[os.path.dirname(f)].append(f)
    for d, in_dir in sorted(by_dir.items()):
        path = os.path.join(d, MANIFEST_NAME)
        if not tf.io.gfile.exists(path):
            continue
        m = read_manifest_file(path)
        listed = {e.get("path") for e in m.get("files", []) if isinstance(e, dict)}
        stray = sorted(os.path.basename(f) for f in in_dir
                       if os.path.basename(f) not in listed and os.path.basename(f) != MANIFEST_NAME)
        if stray:
            raise PretrainingDataError(
                f"{d}: {len(stray)} file(s) are not listed in its {MANIFEST_NAME} (e.g. "
                f"{', '.join(stray[:3])}): shards left from another run? Remove them, or pass "
                f"only the listed shards")
        sizes = {e["path"]: e["bytes"] for e in m.get("files", [])
                 if isinstance(e, dict) and isinstance(e.get("bytes"), int)}
        for f in in_dir:
            want = sizes.get(os.path.basename(f))
            if want is not None and tf.io.gfile.stat(f).length != want:
                raise PretrainingDataError(
                    f"{f}: {tf.io.gfile.stat(f).length} bytes, but {path} says {want}: truncated "
                    f"or changed since it was written (an interrupted copy?); copy it again or "
                    f"remake the records")
        if seq_len is not None and m.get("seq_len") != seq_len:
            raise PretrainingDataError(
                f"{path}: records were written with seq_len={m.get('seq_len')}, but the reader "
                f"was asked for seq_len={seq_len}")


def _check_manifest(files: Sequence[str], seq_len: int) -> None:
    check_files_against_manifests(files, seq_len)


def records_per_file(files: Sequence[str]) -> List[int]:
    """Records in each of ``files``: from the manifest beside it (whose byte sizes the reader has
    checked) when it lists the file, else counted by reading the file once."""
    listed: dict = {}
    for d in sorted({os.path.dirname(f) for f in files}):
        path = os.path.join(d, MANIFEST_NAME)
        if tf.io.gfile.exists(path):
            for e in read_manifest_file(path).get("files", []):
                if isinstance(e, dict) and isinstance(e.get("num_examples"), int):
                    listed[os.path.join(d, str(e.get("path")))] = e["num_examples"]
    return [listed[f] if f in listed else
            int(tf.data.TFRecordDataset(f).reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))
            for f in files]


def _takes_seed(masker: Callable) -> bool:
    """Whether ``masker`` takes a ``seed`` key (``MlmMasker`` does; a plain ``fn(batch)`` not)."""
    try:
        return "seed" in inspect.signature(masker).parameters
    except (TypeError, ValueError):
        return False


def make_pretraining_dataset(file_pattern, seq_len: int, batch_size: int,
                             input_context: Optional[tf.distribute.InputContext] = None,
                             shuffle: bool = True, repeat: bool = True, shuffle_buffer: int = 20480,
                             cycle_length: int = 16, seed: Optional[int] = None, pad_id: int = 0,
                             masker: Optional[Callable[[dict], dict]] = None,
                             cache: bool = False, start_batch: int = 0,
                             deterministic: Optional[bool] = None) -> tf.data.Dataset:
    """Sharded pretraining TFRecords -> batched int32 features with static shapes.

    ``batch_size`` is the *global* batch size; with an ``input_context`` each input pipeline
    reads its own subset of files (``input_pipeline_id::num_input_pipelines``; examples are
    sharded instead when there are fewer files than pipelines) and batches per replica
    (``input_context.get_per_replica_batch_size``). Batches are ``drop_remainder=True``.

    Epoch ``e`` is shuffled with stateless keys derived from (``seed``, e) alone (file order, then
    records permuted in blocks of ``shuffle_buffer``), so the input order is a pure function of
    the seed: ``start_batch=k`` yields exactly the batches k, k+1, ... of the
    stream that starts at 0, jumping to k's epoch by arithmetic (records per pipeline come from
    the manifests) and skipping the serialized records before k within it (never parsing or
    masking them): a resume reads at most one epoch of raw records, whatever the step.

    ``masker`` (e.g. ``masking.MlmMasker``) is applied to each batch, in parallel; one that takes
    ``seed`` gets the key of (``seed``, pipeline id, batch index), so the masks are reproducible
    too. ``deterministic`` (default: ``seed`` given) keeps the element order fixed. ``cache``
    caches this pipeline's raw records (file order of epoch 0) so masking stays fresh every epoch.
    """
    patterns = [file_pattern] if isinstance(file_pattern, str) else list(file_pattern)
    files = sorted({f for p in patterns for f in tf.io.gfile.glob(p)})
    if not files:
        raise MissingInputError(f"no pretraining files match {file_pattern!r}")
    if start_batch < 0:
        raise PretrainingDataError(f"start_batch must be >= 0, got {start_batch}")
    _check_manifest(files, seq_len)
    if deterministic is None:
        deterministic = seed is not None
    per_batch, n_pipes, pipe_id = batch_size, 1, 0
    if input_context is not None:
        per_batch = input_context.get_per_replica_batch_size(batch_size)
        n_pipes, pipe_id = input_context.num_input_pipelines, input_context.input_pipeline_id
    shard_examples = n_pipes > 1 and len(files) < n_pipes
    own_files = files if (n_pipes == 1 or shard_examples) else files[pipe_id::n_pipes]
    run_seed = seed if seed is not None else random.SystemRandom().getrandbits(62)
    base_key = masking.batch_key(run_seed, 0, stream=-1)  # of the shuffles (masks: stream=pipe_id)
    fold = tf.random.experimental.stateless_fold_in

    def permuted(values, key):  # a stateless uniform permutation of values' first axis
        return tf.gather(values, tf.argsort(tf.random.stateless_uniform(tf.shape(values)[:1], key)))

    def records(key) -> tf.data.Dataset:
        """This pipeline's serialized records of one epoch, files in the order ``key`` gives."""
        names = tf.constant(own_files)
        ds = tf.data.Dataset.from_tensor_slices(permuted(names, key) if shuffle else names)
        ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(cycle_length, len(files)),
                           num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
        return ds.shard(n_pipes, pipe_id) if shard_examples else ds

    cached = records(fold(base_key, 0)).cache() if cache else None

    def epoch(e) -> tf.data.Dataset:
        """Epoch e: files in the order of key (seed, e), records permuted in blocks of
        shuffle_buffer by keys (seed, e, block). Stateless, so independent of tf.random.set_seed."""
        key = fold(base_key, e)
        ds = cached if cache else records(fold(key, 0))
        if shuffle:
            ds = ds.batch(shuffle_buffer).enumerate().map(
                lambda i, block: permuted(block, fold(fold(key, 1), i))).unbatch()
        return ds

    skip = start_batch * per_batch  # records of this pipeline before batch `start_batch`
    if repeat:
        first_epoch = 0
        if skip:
            counts = records_per_file(own_files)
            total = sum(counts)
            per_epoch = len(range(pipe_id, total, n_pipes)) if shard_examples else total
            if per_epoch == 0:
                raise PretrainingDataError(f"input pipeline {pipe_id} of {n_pipes} has no records "
                                           f"in {len(own_files)} file(s)")
            first_epoch, skip = divmod(skip, per_epoch)
        ds = tf.data.Dataset.range(first_epoch, 2 ** 62).flat_map(epoch)
    else:
        ds = epoch(tf.constant(0, tf.int64))
    if skip:
        ds = ds.skip(skip)  # serialized records: nothing before start_batch is parsed or masked
    ds = ds.batch(per_batch, drop_remainder=True).enumerate(start=start_batch)
    keyed = masker is not None and _takes_seed(masker)

    def parse_and_mask(index, serialized):  # index: this batch's position in the input order
        features = parse_pretraining_batch(serialized, seq_len, pad_id)
        if masker is None:
            return features
        if keyed:
            return masker(features, seed=masking.batch_key(run_seed, index, stream=pipe_id))
        return masker(features)

    ds = ds.map(parse_and_mask, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    return ds.prefetch(tf.data.AUTOTUNE)


__all__ = ["make_pretraining_dataset", "parse_pretraining_batch", "read_manifest_file",
           "check_files_against_manifests", "records_per_file"]
