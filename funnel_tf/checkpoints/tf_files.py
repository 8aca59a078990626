"""Reading TF training checkpoints' files: find them by listing (not only through the `checkpoint`
state file, which can be stale or missing), tell whether one is readable without restoring it, and
open its reader. Works on any `tf.io.gfile` filesystem (local, gs://, ram://); the engine's
checkpoint_files.py adds the write side (error classes, cleanup after a failed save).
"""

from __future__ import annotations

import os
import re
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf

DATA_RE = re.compile(r"\.data-(\d+)-of-(\d+)$")


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
        m = DATA_RE.search(path)
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
    total = int(DATA_RE.search(next(iter(shards.values()))).group(2))
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


def open_reader(prefix: str):
    """TF's checkpoint reader for `prefix` (not `tf.train.load_checkpoint`, which takes a prefix
    for a directory on filesystems such as ram:// where `ckpt-1` looks like one)."""
    return tf.compat.v1.train.NewCheckpointReader(prefix)


def first_line(error: BaseException) -> str:
    """The error's first non-empty line without TF's `{{function_node ...}}` noise."""
    text = re.sub(r"\{\{[^}]*\}\}\s*", "", str(error))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return (lines[0] if lines else type(error).__name__)[:300]
