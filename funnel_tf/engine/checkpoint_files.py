"""The files of TF training checkpoints: find them by listing (not only through the `checkpoint`
state file, which can be stale or missing), tell whether one is readable without restoring it,
classify read / write errors, and clean up what a failed save left behind.

Works on any `tf.io.gfile` filesystem (local, gs://, ram://).
"""

from __future__ import annotations

import errno
from typing import Dict, List

import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2

# Reading checkpoint files is the checkpoints package's (a pretraining run loads as a model there).
from funnel_tf.checkpoints.tf_files import (  # noqa: F401 (the engine's names)
    data_files, find_checkpoints, first_line, open_reader, step_of, unreadable_reason)

_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"


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
