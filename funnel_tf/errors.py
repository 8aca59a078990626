"""`UserError`: the one base class of every error a user causes (flags, files, configs, data,
checkpoints that do not fit). Entry points catch it and print one line on stderr, exit status 2
(`funnel_tf.cli.main_with_user_errors`); so are the file system's refusals (`storage_problem`:
disk full, quota, read-only, permissions). Anything else is a bug and keeps its traceback."""

from __future__ import annotations

import errno
from typing import Optional


class UserError(Exception):
    """An error in what the user asked for or gave us; its message says what and where.

    Every error a user can cause is a subclass (ConfigError, TokenizerError, CheckpointError,
    TaskError, ...): catch this one class to tell them from bugs. Entry points print its message
    as one line on stderr and exit with status 2.

    Example:

    >>> from funnel_tf import UserError, load_config
    >>> try:
    ...     load_config("tiny").replace(d_modle=32)
    ... except UserError as e:
    ...     print(e)
    FunnelConfig: unknown fields ['d_modle'] (did you mean d_model?)
    """


def one_line(error: BaseException) -> str:
    """The error's message on one line (multi-line messages joined with '; ')."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    return "; ".join(lines) or type(error).__name__


# errno -> what the user has to fix. EFBIG: a file-size limit (ulimit -f) acts like a full disk.
_STORAGE_ERRNOS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
                   errno.EFBIG: "a file-size limit was hit", errno.EROFS: "the file system is read-only",
                   errno.EACCES: "permission denied", errno.EPERM: "permission denied"}
# The same refusals as TensorFlow's file systems word them (tf.errors.OpError, any code).
_STORAGE_TEXTS = {"no space left on device": "the disk is full",
                  "disk quota exceeded": "the disk quota is exceeded",
                  "quota exceeded": "the disk quota is exceeded",
                  "file too large": "a file-size limit was hit",
                  "read-only file system": "the file system is read-only",
                  "permission denied": "permission denied"}
STORAGE_HINT = ("free space (or fix the permissions) and rerun the same command (a training run "
                "resumes from its last checkpoint; a failed write leaves it intact)")


def storage_problem(error: BaseException) -> Optional[str]:
    """One line for an error that is the file system refusing a read or write (disk full, quota,
    file-size limit, read-only, permissions), wherever it surfaced (a summary, a log, a record
    file, an export); None for anything else, which stays a bug with its traceback."""
    what = None
    if isinstance(error, OSError) and error.errno in _STORAGE_ERRNOS:
        what = _STORAGE_ERRNOS[error.errno]
    elif isinstance(error, OSError) or hasattr(error, "error_code"):  # tf.errors.OpError
        text = str(error).lower()
        what = next((v for k, v in _STORAGE_TEXTS.items() if k in text), None)
    if what is None:
        return None
    return f"{what}: {one_line(error)[:500]}; {STORAGE_HINT}"
