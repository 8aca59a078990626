"""The files of TF training checkpoints: find them by listing (not only through the `checkpoint`
state file, which can be stale or missing), tell whether one is readable without restoring it,
classify read / write errors, and clean up what a failed save left behind.

Works on any `tf.io.gfile` filesystem (local, gs://, ram://).
"""

from __future__ import annotations

import errno
import os
import re
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2

_DATA_RE = re.compile(r"\.data-(\d+)-of-(\d+)$")
_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"


def _step_of(name: str, prefix_name: str) -> Optional[int]:
    m = re.match(rf"^{re.escape(prefix_name)}-(\d+)(?:\.index|\.data-\d+-of-\d+)?$", name)
    return int(m.group(1)) if m else None


def step_of(prefix: str) -> int:
    """The step in a checkpoint prefix's name (`.../ckpt-200` -> 200; -1 if none)."""
    m = re.search(r"-(\d+)$", prefix)
    return int(m.group(1)) if m else -1


def find_checkpoints(directory: str, name: str = "ckpt") -> List[str]:
    """Prefixes (`<directory>/<name>-<step>`) of every checkpoint that has a file in `directory` or
    is named by its `checkpoint` state file, newest step first."""
    steps = set()
    if tf.io.gfile.isdir(directory):
        for f in tf.io.gfile.listdir(directory):
            step = _step_of(f.rstrip("/"), name)
            if step is not None and not f.endswith("/"):
                steps.add(step)
    state = tf.train.get_checkpoint_state(directory)  # None when missing or unparsable
    if state is not None:
        for p in list(state.all_model_checkpoint_paths) + [state.model_checkpoint_path]:
            step = _step_of(os.path.basename(p), name)
            if step is not None:
                steps.add(step)
    return [os.path.join(directory, f"{name}-{s}") for s in sorted(steps, reverse=True)]


def data_files(prefix: str) -> Dict[int, str]:
    """{shard: path} of the `<prefix>.data-SSSSS-of-NNNNN` files."""
    out = {}
    for path in tf.io.gfile.glob(prefix + ".data-*"):
        m = _DATA_RE.search(path)
        if m:
            out[int(m.group(1))] = path
    return out


def unreadable_reason(prefix: str) -> Optional[str]:
    """Why the checkpoint `prefix` cannot be restored (missing / truncated / corrupt files), or None
    if it looks complete. Reads the index and file sizes only, not the tensors."""
    if not tf.io.gfile.exists(prefix + ".index"):
        return "its .index file is missing (an interrupted save, or deleted)"
    shards = data_files(prefix)
    if not shards:
        return "its .data-* file is missing"
    total = int(_DATA_RE.search(next(iter(shards.values()))).group(2))
    missing = sorted(set(range(total)) - set(shards))
    if missing:
        return f"{len(missing)} of its {total} .data-* shard(s) are missing"
    try:
        reader = open_reader(prefix)
        shapes = reader.get_variable_to_shape_map()
        dtypes = reader.get_variable_to_dtype_map()
    except (tf.errors.OpError, IndexError, ValueError) as e:
        return f"its .index file is truncated or corrupt ({first_line(e)})"
    need = sum(int(np.prod(shapes[k], dtype=np.int64)) * dtypes[k].size for k in shapes
               if dtypes[k] != tf.string)
    have = sum(tf.io.gfile.stat(p).length for p in shards.values())
    if have < need:
        return f"its .data-* files hold {have} bytes, fewer than the {need} its tensors need " \
               f"(truncated)"
    return None


def table_sizes(prefix: str, table: str = "weights") -> Dict[str, int]:
    """{model name: number of entries} of the checkpoint's `table` (TrainingCheckpoint's
    {"weights": {model: {variable path: variable}}}); {} when it has no such table."""
    graph = _object_graph(prefix)
    for c in graph.nodes[0].children:
        if c.local_name == table:
            return {m.local_name: len(graph.nodes[m.node_id].children)
                    for m in graph.nodes[c.node_id].children}
    return {}


def _object_graph(prefix: str):
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(open_reader(prefix).get_tensor(_GRAPH_KEY))
    return graph


def top_level_names(prefix: str) -> Dict[str, List[str]]:
    """{child of the checkpoint root: names of its children} from the stored object graph, e.g.
    {"weights": ["masked_lm"], "optimizer": [...], "step": []}."""
    graph = _object_graph(prefix)
    return {c.local_name: sorted(g.local_name for g in graph.nodes[c.node_id].children)
            for c in graph.nodes[0].children}


def open_reader(prefix: str):
    """TF's checkpoint reader for `prefix` (not `tf.train.load_checkpoint`, which takes a prefix
    for a directory on filesystems such as ram:// where `ckpt-1` looks like one)."""
    return tf.compat.v1.train.NewCheckpointReader(prefix)


def first_line(error: BaseException) -> str:
    """The error's first non-empty line without TF's `{{function_node ...}}` noise."""
    text = re.sub(r"\{\{[^}]*\}\}\s*", "", str(error))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return (lines[0] if lines else type(error).__name__)[:300]


def is_corruption(error: BaseException) -> bool:
    """True for errors that mean the stored files are broken (truncated, bad checksum, missing),
    as opposed to transient I/O failures that a retry could fix (those must not be skipped over:
    falling back to an older checkpoint would later overwrite a good newer one)."""
    if isinstance(error, (IndexError, tf.errors.DataLossError, tf.errors.NotFoundError,
                          tf.errors.OutOfRangeError)):
        return True
    # Missing data file or a mangled index come back as plain OpError with code UNKNOWN.
    return isinstance(error, tf.errors.OpError) and error.error_code == tf.errors.UNKNOWN


def is_out_of_space(error: BaseException) -> bool:
    """True for "no space left on device" / quota errors from Python or TF's file systems."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if isinstance(error, tf.errors.ResourceExhaustedError):
        return True
    text = str(error).lower()
    return "no space left" in text or "quota exceeded" in text or "disk quota" in text


def remove_partial_save(prefix: str, temp_only: bool = False) -> List[str]:
    """Delete what a failed save of `prefix` left: `<prefix>_temp*` folders and (unless
    `temp_only`) the prefix's own .index / .data-* files. Returns the removed paths (best effort;
    errors are ignored)."""
    removed = []
    paths = tf.io.gfile.glob(prefix + "_temp*")
    if not temp_only:
        paths += tf.io.gfile.glob(prefix + ".index") + tf.io.gfile.glob(prefix + ".data-*")
    for path in paths:
        try:
            if tf.io.gfile.isdir(path):
                tf.io.gfile.rmtree(path)
            else:
                tf.io.gfile.remove(path)
            removed.append(path)
        except (tf.errors.OpError, OSError):
            pass
    return removed
