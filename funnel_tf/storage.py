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
from typing import List

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
    """A new empty folder next to `path` (same filesystem, so it can be moved into place)."""
    folder = parent(path)
    tf.io.gfile.makedirs(folder)
    if is_local(folder):
        tmp = tempfile.mkdtemp(prefix=prefix, dir=folder)
        os.chmod(tmp, 0o755)  # mkdtemp's 0700 would make the result private to this user
        return tmp
    tmp = f"{folder.rstrip('/')}/{prefix}{uuid.uuid4().hex[:12]}"
    tf.io.gfile.makedirs(tmp)
    return tmp


# Non-local filesystems are read through their real entries only: TF's ram:// matches names by
# prefix, so it reports ram://run/best as existing, and lists "_result.json" in it, as soon as
# ram://run/best_result.json exists. A listed name counts only if the path it makes exists.
def _is_dir_entry(path: str) -> bool:
    try:
        return tf.io.gfile.stat(path).is_directory
    except tf.errors.NotFoundError:
        return False


def _children(folder: str) -> List[str]:
    """The real entries of a non-local folder (names without a trailing slash)."""
    try:
        names = tf.io.gfile.listdir(folder)
    except tf.errors.NotFoundError:
        return []
    base = folder.rstrip("/")
    return [n.rstrip("/") for n in names if tf.io.gfile.exists(f"{base}/{n.rstrip('/')}")]


def exists(path: str) -> bool:
    """`tf.io.gfile.exists`, except that on non-local filesystems a folder counts only when it
    holds a file (see above; an empty folder there is as good as none)."""
    if is_local(path):
        return tf.io.gfile.exists(path)
    if not tf.io.gfile.exists(path):
        return False
    if not _is_dir_entry(path):
        return True
    return any(exists(f"{path.rstrip('/')}/{name}") for name in _children(path))


def remove_tree(path: str) -> None:
    """Delete a folder (or file) and everything under it; nothing there is fine."""
    if is_local(path):
        try:
            if tf.io.gfile.isdir(path):
                tf.io.gfile.rmtree(path)
            elif tf.io.gfile.exists(path):
                tf.io.gfile.remove(path)
        except tf.errors.NotFoundError:
            pass
        return
    if _is_dir_entry(path):
        for name in _children(path):
            remove_tree(f"{path.rstrip('/')}/{name}")
    try:
        tf.io.gfile.remove(path)
    except tf.errors.NotFoundError:
        pass


def move_dir(src: str, dst: str) -> None:
    """Move folder `src` to `dst` (which must not exist): one rename on local disks; elsewhere
    a copy of every file, then `src` is removed (object stores have no folder rename, and
    ram:// renames only the folder's own entry, not what is in it)."""
    if is_local(src) and is_local(dst):
        tf.io.gfile.rename(src, dst)
        return
    tf.io.gfile.makedirs(dst)
    for name in _children(src):
        source, target = f"{src.rstrip('/')}/{name}", f"{dst.rstrip('/')}/{name}"
        if _is_dir_entry(source):
            move_dir(source, target)
        else:
            tf.io.gfile.copy(source, target, overwrite=True)
    remove_tree(src)


def _old(directory: str) -> str:
    """Where `replace_dir` keeps the previous folder: a hidden sibling whose name does not start
    with the folder's own (so no prefix-matching filesystem sees one in the other)."""
    head, name = posixpath.split(directory.rstrip("/")) if not is_local(directory) else \
        os.path.split(directory.rstrip("/"))
    return f"{head}/.{name}.old"


def replace_dir(tmp: str, directory: str) -> None:
    """Move the finished folder `tmp` to `directory`, replacing what is there. The previous
    folder stays under a hidden `.<name>.old` sibling until the new one is in place (see
    `recover_dir`)."""
    if exists(directory):
        old = _old(directory)
        remove_tree(old)
        move_dir(directory, old)
        move_dir(tmp, directory)
        remove_tree(old)
    else:
        remove_tree(directory)  # an empty leftover folder
        move_dir(tmp, directory)


def recover_dir(directory: str) -> None:
    """Undo a `replace_dir` cut short between its two moves: put the previous folder back."""
    old = _old(directory)
    if exists(old) and not exists(directory):
        remove_tree(directory)
        move_dir(old, directory)


def atomic_write_text(path: str, text: str) -> None:
    """Write via a temp file + rename so a crash never leaves a half-written file."""
    tf.io.gfile.makedirs(os.path.dirname(path) or ".")
    tmp = path + ".tmp"
    if tf.io.gfile.exists(tmp):  # left by a killed run; ram:// would append to it, not replace
        tf.io.gfile.remove(tmp)
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write(text)
    tf.io.gfile.rename(tmp, path, overwrite=True)
