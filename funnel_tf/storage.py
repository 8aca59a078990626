"""Paths on any filesystem TensorFlow knows (local disk, gs:// on pods, ram:// in tests): comparing
locations, and the directory moves that finetuning and export need beyond `tf.io.gfile`.

Everything goes through `tf.io.gfile`, so one code path serves every filesystem; local
directories are still moved into place with one rename (atomic on POSIX).
"""

from __future__ import annotations

import os
import posixpath
import tempfile
import uuid

import tensorflow as tf


def is_local(path: str) -> bool:
    """True for plain and file:// paths, False for gs://, ram://, hdfs:// ..."""
    return "://" not in path or path.startswith("file://")


def canonical(path: str) -> str:
    """An absolute, normalised form for comparing locations: symlinks resolved for local paths;
    `scheme://a/b` without '.', '..', doubled or trailing slashes otherwise."""
    if is_local(path):
        local = path[len("file://"):] if path.startswith("file://") else path
        return os.path.realpath(os.path.expanduser(local))
    scheme, rest = path.split("://", 1)
    rest = posixpath.normpath("/" + rest).lstrip("/")
    return f"{scheme.lower()}://{rest}"


def contains(outer: str, inner: str) -> bool:
    """True when `inner` is `outer` or lies inside it."""
    outer, inner = canonical(outer), canonical(inner)
    return inner == outer or inner.startswith(outer.rstrip("/") + "/")


def overlap(a: str, b: str) -> bool:
    """True when `a` and `b` are the same location or one lies inside the other."""
    return contains(a, b) or contains(b, a)


def parent(path: str) -> str:
    """The folder holding `path` (absolute for local paths; the filesystem root at most)."""
    if is_local(path):
        return os.path.dirname(canonical(path))
    scheme, rest = canonical(path).split("://", 1)
    return f"{scheme}://{posixpath.dirname(rest)}"


def make_temp_dir_beside(path: str, prefix: str) -> str:
    """A new empty folder next to `path` (same filesystem, so it can be renamed into place)."""
    folder = parent(path)
    tf.io.gfile.makedirs(folder)
    if is_local(folder):
        tmp = tempfile.mkdtemp(prefix=prefix, dir=folder)
        os.chmod(tmp, 0o755)  # mkdtemp's 0700 would make the result private to this user
        return tmp
    tmp = f"{folder.rstrip('/')}/{prefix}{uuid.uuid4().hex[:12]}"
    tf.io.gfile.makedirs(tmp)
    return tmp


def remove_tree(path: str) -> None:
    """Delete a folder (or file) and everything under it; nothing there is fine."""
    try:
        if tf.io.gfile.isdir(path):
            tf.io.gfile.rmtree(path)
        elif tf.io.gfile.exists(path):
            tf.io.gfile.remove(path)
    except tf.errors.NotFoundError:
        pass


def _old(directory: str) -> str:
    return directory.rstrip("/") + ".old"


def replace_dir(tmp: str, directory: str) -> None:
    """Move the finished folder `tmp` to `directory`, replacing what is there. The previous
    folder stays under `<directory>.old` until the new one is in place (see `recover_dir`)."""
    if tf.io.gfile.exists(directory):
        old = _old(directory)
        remove_tree(old)
        tf.io.gfile.rename(directory, old)
        tf.io.gfile.rename(tmp, directory)
        remove_tree(old)
    else:
        tf.io.gfile.rename(tmp, directory)


def recover_dir(directory: str) -> None:
    """Undo a `replace_dir` cut short between its two renames: put `<directory>.old` back."""
    old = _old(directory)
    if not tf.io.gfile.exists(directory) and tf.io.gfile.exists(old):
        tf.io.gfile.rename(old, directory)
