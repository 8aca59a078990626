"""The one family of checkpoint errors, all UserErrors (one line, exit 2 in entry points):
CheckpointError (a checkpoint that cannot be used as asked, with every missing, unexpected and
mis-shaped tensor named, so a load is complete or refused, never silently partial) and its kinds:
unreadable files, a model_dir holding another run's checkpoints, a failed write."""

import fnmatch
from typing import Iterable, List, Optional, Sequence, Tuple

from funnel_tf.errors import UserError

# `allow_missing` keyword that matches every tensor of a task head (not of the backbone).
HEAD = "head"
_MAX_LISTED = 25  # per category; the count is always exact


def _listing(title: str, items: Sequence[str]) -> List[str]:
    if not items:
        return []
    lines = [f"  {title} ({len(items)}):"]
    lines += [f"    {x}" for x in items[:_MAX_LISTED]]
    if len(items) > _MAX_LISTED:
        lines.append(f"    ... and {len(items) - _MAX_LISTED} more")
    return lines


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be loaded (or written) as asked; the message says which tensors and why.

    `missing`: tensors the model needs that the checkpoint lacks; `unexpected`: checkpoint tensors the
    model has no place for; `mismatched`: (name, checkpoint shape, expected shape).
    """

    def __init__(self, message: str, source: Optional[str] = None, missing: Iterable[str] = (),
                 unexpected: Iterable[str] = (), mismatched: Iterable[Tuple[str, tuple, tuple]] = (),
                 hint: Optional[str] = None):
        self.source = source
        self.missing = sorted(missing)
        self.unexpected = sorted(unexpected)
        self.mismatched = sorted(mismatched)
        lines = [f"{source}: {message}" if source else message]
        lines += _listing("missing from the checkpoint", self.missing)
        lines += _listing("unexpected in the checkpoint", self.unexpected)
        lines += _listing("shape mismatch (checkpoint vs model)",
                          [f"{n}: {tuple(a)} vs {tuple(b)}" for n, a, b in self.mismatched])
        if hint:
            lines.append(hint)
        super().__init__("\n".join(lines))


class CheckpointReadError(CheckpointError):
    """A weight or checkpoint file that cannot be read at all: truncated, corrupt, incomplete or
    not the format its name says (the message names the file; no traceback)."""


class CheckpointMismatchError(CheckpointError):
    """A model_dir's training checkpoint was written by another objective or model config."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint could not be written (disk full, no permission); the previous one is intact."""


def read_error(source: str, error: BaseException, what: str = "file") -> CheckpointReadError:
    """The CheckpointReadError for `error` raised while reading `source` (first line of its text)."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    detail = f"{type(error).__name__}: {lines[0][:200]}" if lines else type(error).__name__
    return CheckpointReadError(f"cannot read this {what}: it is truncated, corrupt or not a {what} "
                               f"({detail}); download or convert it again", source=source)


def matches_any(name: str, patterns: Iterable[str]) -> bool:
    """fnmatch-style match of a tensor name against any pattern (e.g. "classifier.*")."""
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)
