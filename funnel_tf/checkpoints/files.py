"""File access for checkpoints on every Keras backend: local paths through `os` (no TensorFlow,
so JAX installs without it load our, HF and Keras files), other filesystems (gs://, ram://)
through `tf.io.gfile`, which only TensorFlow provides.
"""

from __future__ import annotations

import glob as _glob
import os
from typing import List

from funnel_tf.checkpoints.errors import CheckpointError


def is_local(path: str) -> bool:
    """True for plain and file:// paths, False for gs://, ram://, hdfs:// ..."""
    return "://" not in path or path.startswith("file://")


def _local(path: str) -> str:
    return path[len("file://"):] if path.startswith("file://") else path


def tensorflow(what: str, source: str = None):
    """The `tensorflow` module, or a CheckpointError saying that `what` needs it installed."""
    try:
        import tensorflow as tf
    except ImportError as e:
        raise CheckpointError(f"{what} needs TensorFlow, which is not importable here ({e}); "
                              f"install tensorflow (pip install 'funnel-tf[cpu]' or tensorflow)",
                              source=source) from None
    return tf


def _gfile(path: str):
    return tensorflow("a path on a non-local filesystem", source=path).io.gfile


def exists(path: str) -> bool:
    return os.path.exists(_local(path)) if is_local(path) else _gfile(path).exists(path)


def isdir(path: str) -> bool:
    return os.path.isdir(_local(path)) if is_local(path) else _gfile(path).isdir(path)


def listdir(path: str) -> List[str]:
    return os.listdir(_local(path)) if is_local(path) else _gfile(path).listdir(path)


def glob(pattern: str) -> List[str]:
    return _glob.glob(_local(pattern)) if is_local(pattern) else _gfile(pattern).glob(pattern)


def makedirs(path: str) -> None:
    if is_local(path):
        os.makedirs(_local(path), exist_ok=True)
    else:
        _gfile(path).makedirs(path)


def open_file(path: str, mode: str = "r"):
    """A file object for `path` ("r" / "w": text, "rb" / "wb": bytes)."""
    if is_local(path):
        return open(_local(path), mode, **({} if "b" in mode else {"encoding": "utf-8"}))
    return _gfile(path).GFile(path, mode)


def read_errors() -> tuple:
    """The exceptions a failed read raises: OSError, and TensorFlow's OpError when TF is loaded."""
    import sys

    tf = sys.modules.get("tensorflow")
    errors = getattr(tf, "errors", None)
    return (OSError,) + ((errors.OpError,) if errors is not None and hasattr(errors, "OpError") else ())
