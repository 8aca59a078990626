"""Finetuning features as TFRecords: tokenized once here, read back with core TF ops only.

Why: the GLUE / classification / SQuAD / RACE readers tokenize inside `tf.data` with
tensorflow-text ops. On a TPU pod (and under MultiWorkerMirroredStrategy) each host's input
pipeline runs in that host's TF server, which never loads tensorflow-text ("Op type not
registered"). So there the features are made once by this process (which has tensorflow-text)
and written as `tf.train.Example` records; each host's input graph then holds only
TFRecordDataset, shuffle, repeat, batch, ParseExampleV2 / ParseSingleExample, cast, unbatch,
shard (tests/tasks/test_feature_records.py checks every op against a process that never
imported tensorflow_text).

A *record* is one unit of the in-graph encoder's output, in the encoder's order: one example
(classification: [seq_len] features; RACE: [4, seq_len]; SQuAD: all K windows of a question,
[K, seq_len], the leading dim stored as a variable-length sequence). Reading the records
through `shuffle(num_records, seed)` and `repeat()` gives exactly the stream of the tokenizing
path, which shuffles the same number of examples with the same seed before tokenizing: same
features, same order (tests/tasks/test_feature_records.py checks it element for element).

Layout (one folder per feature set, its name holding a digest of everything that shapes the
features: format, task options, tokenizer (vocab sha256, casing), sequence lengths and a sha256
of the parsed examples themselves — so changed data, vocab or options never reuse old records):

    <root>/<name>-<digest[:16]>/features-00000-of-0000N.tfrecord ... manifest.json

The manifest is written last and lists every shard with its byte size; a folder whose manifest
is missing, of another key or format, or whose shards are missing or of another size is stale
or truncated and is rebuilt. Writers build into a hidden temporary sibling and move it into
place, so readers never see half a folder. Multi-worker: the chief writes, the other workers
wait (polling, `wait_s`) for its complete copy and read it. That keeps the project's rule that
only the chief writes under model_dir, and needs nothing new: a multi-worker model_dir must
already be readable by every worker (they restore the chief's checkpoints from it). A worker
that waits in vain stops with one line naming the folder. Writers racing on one folder (two
runs, or `write=True` everywhere) still end with one complete copy: the first complete one
wins, the others drop theirs (the bytes are identical: the encoder is deterministic). Records
are made on first use, i.e. when the training input or an evaluation first needs them, after
the run's checks (`RecordSource`). A TPU pod's hosts read the records the one client wrote, so there the folder
must be on storage every host reads (gs://); `check_root` says so before anything is written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import threading
import time
import uuid
from typing import Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import tensorflow as tf
from absl import logging

from funnel_tf import storage
from funnel_tf.errors import UserError

FORMAT_VERSION = "funnel_tf.feature_records.v1"
MANIFEST_NAME = "manifest.json"
MODES = ("auto", "always", "never")
RECORDS_PER_SHARD = 100_000
_TRUE = ("always", "true", "yes", "1", "on")
_FALSE = ("never", "false", "no", "0", "off")


class FeatureRecordsError(UserError, ValueError):
    """Feature-records settings that cannot work (an unknown mode, a pod-unreadable folder)."""


# ------------------------------------------------------------------------------------ settings
def normalize_mode(mode: Union[str, bool, None]) -> str:
    """"auto" | "always" | "never" from a flag value (also True/False, "true"/"false")."""
    if mode is None:
        return "auto"
    if isinstance(mode, bool):
        return "always" if mode else "never"
    key = str(mode).strip().lower()
    if key == "auto":
        return "auto"
    if key in _TRUE:
        return "always"
    if key in _FALSE:
        return "never"
    raise FeatureRecordsError(f"--feature_records must be one of {list(MODES)} (or true/false), "
                              f"got {mode!r}")


def use_records(mode: Union[str, bool, None], strategy_kind: str) -> bool:
    """Whether to feed pre-tokenized records: "auto" does on TPU and multi-worker strategies,
    whose per-host input pipelines run in TF servers without tensorflow-text's ops."""
    mode = normalize_mode(mode)
    if mode == "auto":
        return strategy_kind in ("tpu", "multi_worker")
    return mode == "always"


def check_root(root: str, strategy_kind: str, num_workers: int) -> None:
    """A TPU pod's hosts open the records themselves: a local folder of this client is refused."""
    if strategy_kind == "tpu" and num_workers > 1 and storage.is_local(root):
        raise FeatureRecordsError(
            f"feature records folder {root} is local to this host, but the {num_workers} TPU "
            f"hosts each read the records: put it on storage every host reads (a gs:// "
            f"--model_dir or --feature_records_dir)")


@contextlib.contextmanager
def on_local_host():
    """Run eager ops (tokenization) on this process's own CPU. After
    `experimental_connect_to_cluster` a TPU client places eager ops on the pod's first host by
    default, whose TF server lacks tensorflow-text's ops; this process has them."""
    from tensorflow.python.eager import context  # private: no public API names the host's device

    with tf.device(context.context().host_address_space() + "/device:CPU:0"):
        yield


# ------------------------------------------------------------------------------------ identity
def _feed(h, obj) -> None:
    """Feed a canonical, type-tagged encoding of `obj` to sha256 `h` (dataclasses, dicts,
    sequences, numpy arrays, str/bytes/numbers/None)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        h.update(b"D" + type(obj).__name__.encode())
        for f in dataclasses.fields(obj):
            h.update(b"F" + f.name.encode())
            _feed(h, getattr(obj, f.name))
    elif isinstance(obj, dict):
        h.update(b"M%d:" % len(obj))
        for k in sorted(obj, key=str):
            _feed(h, str(k))
            _feed(h, obj[k])
    elif isinstance(obj, np.ndarray) and obj.dtype != object:
        h.update(b"A" + str(obj.dtype).encode() + str(obj.shape).encode())
        h.update(np.ascontiguousarray(obj).tobytes())
    elif isinstance(obj, (list, tuple, np.ndarray)):
        h.update(b"L%d:" % len(obj))
        for x in obj:
            _feed(h, x)
    elif isinstance(obj, str):
        b = obj.encode("utf-8", "surrogatepass")
        h.update(b"S%d:" % len(b) + b)
    elif isinstance(obj, bytes):
        h.update(b"B%d:" % len(obj) + obj)
    elif obj is None:
        h.update(b"N")
    elif isinstance(obj, (bool, int, float, np.generic)):
        h.update(b"V" + repr(obj.item() if isinstance(obj, np.generic) else obj).encode() + b";")
    else:
        raise TypeError(f"cannot fingerprint a {type(obj).__name__}")


def fingerprint(obj) -> str:
    """Hex sha256 of `obj`'s content (e.g. parsed examples: every text, label and id)."""
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def tokenizer_identity(tokenizer) -> dict:
    """What of the tokenizer shapes the ids: the vocab's sha256, casing, word limit, specials."""
    from funnel_tf.text.wordpiece import file_sha256

    return {"vocab_sha256": file_sha256(tokenizer.vocab_path),
            "lower_case": bool(getattr(tokenizer, "lower_case", True)),
            "max_chars_per_word": int(getattr(tokenizer, "max_chars_per_word", 0)),
            "special_ids": [int(tokenizer.cls_id), int(tokenizer.sep_id),
                            int(tokenizer.pad_id)]}


def key_digest(key: dict) -> str:
    return hashlib.sha256(json.dumps({"format": FORMAT_VERSION, **key}, sort_keys=True)
                          .encode()).hexdigest()


# ------------------------------------------------------------------------------------ format
def _spec_of(element_spec) -> Dict[str, dict]:
    """{key: {"dtype", "shape"}} of a dict element spec; only the leading dim may be unknown."""
    if not isinstance(element_spec, dict):
        raise TypeError("feature records hold datasets of feature dicts")
    out = {}
    for k, s in sorted(element_spec.items()):
        shape = s.shape.as_list()
        if any(d is None for d in shape[1:]):
            raise ValueError(f"feature {k!r} has shape {shape}: only the leading dim may vary")
        if s.dtype not in (tf.int32, tf.int64, tf.float32):
            raise ValueError(f"feature {k!r} is {s.dtype.name}; records hold int32/int64/float32")
        out[k] = {"dtype": s.dtype.name, "shape": shape}
    return out


def _serialize_rows(batch: Dict[str, np.ndarray], spec: Dict[str, dict]) -> List[bytes]:
    """A numpy batch of features [n, ...] -> n serialized tf.train.Example."""
    n = len(next(iter(batch.values())))
    rows = {k: batch[k].reshape([n, -1]).tolist() for k in spec}
    out = []
    for i in range(n):
        example = tf.train.Example()
        feats = example.features.feature
        for k, s in spec.items():
            if s["dtype"] == "float32":
                feats[k].float_list.value.extend(rows[k][i])
            else:
                feats[k].int64_list.value.extend(rows[k][i])
        out.append(example.SerializeToString())
    return out


def _ragged(spec: Dict[str, dict]) -> bool:
    return any(s["shape"] and s["shape"][0] is None for s in spec.values())


def parse_fn(spec: Dict[str, dict], batched: bool = False
             ) -> Callable[[tf.Tensor], Dict[str, tf.Tensor]]:
    """serialized tf.train.Example [] (or [B] without a variable leading dim) -> the feature
    dict ([B, ...]): core ParseExample ops + casts."""
    features = {}
    for k, s in spec.items():
        dtype = tf.float32 if s["dtype"] == "float32" else tf.int64
        shape = s["shape"]
        if shape and shape[0] is None:
            features[k] = tf.io.FixedLenSequenceFeature(shape[1:], dtype, allow_missing=True)
        else:
            features[k] = tf.io.FixedLenFeature(shape, dtype)

    def parse_records(serialized):
        parse = tf.io.parse_example if batched else tf.io.parse_single_example
        parsed = parse(serialized, features)
        return {k: tf.cast(parsed[k], tf.as_dtype(spec[k]["dtype"])) for k in spec}
    return parse_records


# ------------------------------------------------------------------------------------ a record set
@dataclasses.dataclass
class FeatureRecords:
    """A finished, checked record folder."""

    directory: str
    files: List[str]
    spec: Dict[str, dict]
    num_records: int
    manifest: dict

    def dataset(self, shuffle_seed: Optional[int] = None, repeat: bool = False
                ) -> tf.data.Dataset:
        """The records in written order, optionally shuffled over all of them (seeded, reshuffled
        every epoch, as the tokenizing path shuffles its examples) and repeated; parsed into
        feature dicts with core ops only."""
        ds = tf.data.TFRecordDataset(self.files)
        if shuffle_seed is not None:
            ds = ds.shuffle(self.num_records, seed=shuffle_seed, reshuffle_each_iteration=True)
        if repeat:
            ds = ds.repeat()
        if _ragged(self.spec):  # one question's K windows a record: parsed one by one
            return ds.map(parse_fn(self.spec), num_parallel_calls=tf.data.AUTOTUNE)
        # Parsed 256 at a time (vectorized), then unbatched: the same elements in the same order.
        return ds.batch(256).map(parse_fn(self.spec, batched=True),
                                 num_parallel_calls=tf.data.AUTOTUNE).unbatch()


def _read_manifest(directory: str) -> Optional[dict]:
    path = os.path.join(directory, MANIFEST_NAME)
    try:
        with tf.io.gfile.GFile(path) as f:
            m = json.load(f)
    except (tf.errors.NotFoundError, ValueError, UnicodeDecodeError):
        return None
    return m if isinstance(m, dict) else None


def check_records(directory: str, digest: str) -> Tuple[Optional[FeatureRecords], str]:
    """(records, "") when `directory` holds complete records of `digest`, else (None, why)."""
    if not tf.io.gfile.exists(os.path.join(directory, MANIFEST_NAME)):
        return None, "no manifest"
    m = _read_manifest(directory)
    if m is None:
        return None, "unreadable manifest"
    if m.get("format") != FORMAT_VERSION:
        return None, f"format {m.get('format')!r}, not {FORMAT_VERSION!r}"
    if m.get("key_sha256") != digest:
        return None, "made from other data, vocab or options (stale)"
    files = []
    try:
        for entry in m["files"]:
            path = os.path.join(directory, entry["path"])
            if not tf.io.gfile.exists(path):
                return None, f"{entry['path']} is missing"
            size = tf.io.gfile.stat(path).length
            if size != entry["bytes"]:
                return None, (f"{entry['path']} has {size} bytes, the manifest says "
                              f"{entry['bytes']} (truncated or changed)")
            files.append(path)
        spec, n = m["spec"], int(m["num_records"])
    except (KeyError, TypeError, ValueError):
        return None, "malformed manifest"
    return FeatureRecords(directory, files, spec, n, m), ""


def write_records(units: tf.data.Dataset, directory: str, key: dict, *,
                  records_per_shard: int = RECORDS_PER_SHARD, chunk: int = 256) -> dict:
    """Write every element of the finite dataset `units` (in order) into shards under the new
    folder `directory` (contiguous blocks, so reading the shards in order gives the same order),
    then the manifest. Returns the manifest."""
    spec = _spec_of(units.element_spec)
    t0 = time.time()
    tf.io.gfile.makedirs(directory)
    tmp_paths, counts, n = [], [], 0
    writer = None
    try:
        # Elements of a variable leading dim (SQuAD's windows) cannot be batched: one at a time.
        ragged = _ragged(spec)
        with on_local_host():
            batches = (units.map(lambda f: {k: v[None] for k, v in f.items()}) if ragged
                       else units.batch(chunk))
            for batch in batches.as_numpy_iterator():
                for row in _serialize_rows(batch, spec):
                    if writer is None or counts[-1] == records_per_shard:
                        if writer is not None:
                            writer.close()
                        tmp_paths.append(os.path.join(directory, f"part-{len(tmp_paths):05d}"))
                        writer = tf.io.TFRecordWriter(tmp_paths[-1])
                        counts.append(0)
                    writer.write(row)
                    counts[-1] += 1
                    n += 1
    finally:
        if writer is not None:
            writer.close()
    if n == 0:
        raise ValueError("no features to write")
    entries = []
    for i, (tmp, count) in enumerate(zip(tmp_paths, counts)):
        name = f"features-{i:05d}-of-{len(tmp_paths):05d}.tfrecord"
        tf.io.gfile.rename(tmp, os.path.join(directory, name), overwrite=True)
        entries.append({"path": name, "records": count,
                        "bytes": int(tf.io.gfile.stat(os.path.join(directory, name)).length)})
    manifest = {"format": FORMAT_VERSION, "key_sha256": key_digest(key), "key": key,
                "spec": spec, "num_records": n, "files": entries,
                "seconds": round(time.time() - t0, 2)}
    with tf.io.gfile.GFile(os.path.join(directory, MANIFEST_NAME), "w") as f:
        f.write(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def wait_for_records(directory: str, digest: str, wait_s: float,
                     poll_s: float = 2.0) -> FeatureRecords:
    """A non-chief worker: the chief's complete records in `directory`, once they are there."""
    start = time.time()
    while True:
        records, why = check_records(directory, digest)
        if records is not None:
            return records
        if time.time() - start > wait_s:
            raise FeatureRecordsError(
                f"waited {wait_s:.0f} s for the chief's feature records in {directory} ({why}); "
                f"the chief writes them: is that folder on storage every worker reads?")
        time.sleep(poll_s)


def build_or_load(root: str, name: str, key: dict, make_units: Callable[[], tf.data.Dataset],
                  *, write: bool = True, wait_s: float = 3600.0) -> FeatureRecords:
    """The complete records of `key` under `root`: reused when valid, else (re)built from
    `make_units()` in a temporary sibling and moved into place — or, with `write=False` (a
    non-chief worker), waited for (see the module docstring)."""
    digest = key_digest(key)
    directory = os.path.join(root, f"{name}-{digest[:16]}")
    records, why = check_records(directory, digest)
    if records is not None:
        logging.info("feature records: reusing %s (%d records)", directory, records.num_records)
        return records
    if not write:
        logging.info("feature records: waiting for the chief to write %s", directory)
        return wait_for_records(directory, digest, wait_s)
    logging.info("feature records: writing %s (%s)", directory, why)
    tf.io.gfile.makedirs(root)
    tmp = os.path.join(root, f".tmp-{name}-{uuid.uuid4().hex[:12]}")
    try:
        with on_local_host():
            units = make_units()
        write_records(units, tmp, key)
        if check_records(directory, digest)[0] is None:  # else another worker finished first
            try:
                storage.remove_tree(directory)  # stale or truncated records
                storage.move_dir(tmp, directory)
            except (OSError, tf.errors.OpError):  # a racing worker moved its copy in first
                if check_records(directory, digest)[0] is None:
                    raise
    finally:
        storage.remove_tree(tmp)
    for attempt in range(10):  # a racing worker may be between removing and moving in
        records, why = check_records(directory, digest)
        if records is not None:
            break
        time.sleep(0.5)
    else:
        raise RuntimeError(f"feature records in {directory} fail their check right after "
                           f"writing: {why}")
    logging.info("feature records: %d records in %s", records.num_records, directory)
    return records


class RecordSource:
    """Records made on first use (thread-safe, once): the runner creates one before its checks
    are done and nothing may be written yet; the input pipeline asks for it when it is built."""

    def __init__(self, root: str, name: str, key: dict,
                 make_units: Callable[[], tf.data.Dataset], *, write: bool = True,
                 wait_s: float = 3600.0):
        self.root, self.name, self.key, self._make_units = root, name, key, make_units
        self.write, self.wait_s = write, wait_s
        self._records: Optional[FeatureRecords] = None
        self._lock = threading.Lock()

    def get(self) -> FeatureRecords:
        with self._lock:
            if self._records is None:
                self._records = build_or_load(self.root, self.name, self.key, self._make_units,
                                              write=self.write, wait_s=self.wait_s)
            return self._records

    def dataset(self, shuffle_seed: Optional[int] = None, repeat: bool = False
                ) -> tf.data.Dataset:
        return self.get().dataset(shuffle_seed=shuffle_seed, repeat=repeat)


def record_name(task_name: str, split: str, purpose: str) -> str:
    """A readable, file-safe folder prefix, e.g. "sst-2-train"."""
    raw = f"{task_name}-{split}" + ("" if purpose == "train" else f"-{purpose}")
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in raw)


__all__ = ["FeatureRecords", "FeatureRecordsError", "RecordSource", "build_or_load",
           "check_records", "check_root", "fingerprint", "key_digest", "normalize_mode",
           "on_local_host", "parse_fn", "record_name", "tokenizer_identity", "use_records",
           "wait_for_records", "write_records", "MODES"]
