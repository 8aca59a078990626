"""Can a run write where it was told to? Checked for every output folder before the first step
(and before any folder is made), so a bad --model_dir / --predictions_dir / --export_dir is one
line up front instead of a traceback after training: a regular file at the path or above it, a
name longer than the filesystem allows, or a local parent that cannot be written."""

from __future__ import annotations

import errno
import os
from typing import Optional

import tensorflow as tf

from funnel_tf import storage
from funnel_tf.errors import UserError


class OutputPathError(UserError, ValueError):
    """An output folder that cannot be made or written; the message names the flag and why."""


def _name_max(existing: str) -> int:
    try:
        return int(os.pathconf(existing, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return 255


def _first_existing(path: str) -> str:
    """`path` or its nearest ancestor that exists (the filesystem root / bucket at most)."""
    current = path
    while not tf.io.gfile.exists(current):
        up = os.path.dirname(current.rstrip("/"))
        if not up or up == current or up.endswith(":/"):
            break
        current = up
    return current


def check_output_dir(flag: str, path: Optional[str]) -> None:
    """OutputPathError unless `path` is, or can be made as, a folder this process can write."""
    if not path:
        return
    local = storage.is_local(path)
    full = os.path.abspath(path[len("file://"):] if path.startswith("file://") else path) \
        if local else path
    existing = _first_existing(full)
    if tf.io.gfile.exists(existing) and not tf.io.gfile.isdir(existing):
        where = "is a file" if existing.rstrip("/") == full.rstrip("/") else \
            f"lies under {existing}, which is a file"
        raise OutputPathError(f"{flag} {path} {where}, not a folder")
    if not local:
        return
    limit = _name_max(existing)
    for part in full.split(os.sep):
        if len(part.encode("utf-8", "surrogateescape")) > limit:
            raise OutputPathError(f"{flag} {path}: the name {part[:40]}... is "
                                  f"{len(part.encode('utf-8', 'surrogateescape'))} bytes, longer "
                                  f"than the {limit} this filesystem allows")
    if len(full.encode("utf-8", "surrogateescape")) >= 4096:
        raise OutputPathError(f"{flag} {path[:60]}...: the path is longer than the filesystem "
                              f"allows ({os.strerror(errno.ENAMETOOLONG)})")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputPathError(f"{flag} {path}: {existing} is not writable by this user")


__all__ = ["OutputPathError", "check_output_dir"]
