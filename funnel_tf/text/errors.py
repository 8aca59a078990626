"""The one error type the data readers raise for malformed input files.

A bad row or file must never turn into a silent wrong example: readers raise `DataFormatError`
naming the file and the line (or the example id for JSON formats), unless the caller asked to
skip-and-count with `skip_malformed=True`.
"""

from __future__ import annotations

from typing import Optional

from funnel_tf.errors import UserError


class DataFormatError(UserError, ValueError):
    """A malformed row or file; `path`, `line` (1-based) and `example_id` say where."""

    def __init__(self, message: str, path: Optional[str] = None, line: Optional[int] = None,
                              example_id: Optional[str] = None):
        self.message = message
        self.path = None if path is None else str(path)
        self.line = line
        self.example_id = example_id
        super().__init__(self._format())

    def _format(self) -> str:
        where = self.path or "<input>"
        if self.line is not None:
            where += f":{self.line}"
        if self.example_id is not None:
            where += f" (example {self.example_id!r})"
        return f"{where}: {self.message}"


class PretrainingDataError(UserError, ValueError):
    """Pretraining data or settings that cannot be used as given (empty corpus, an output folder
    holding other files, shards no manifest lists); the message names the path and the fix."""


class MalformedCounter:
    """Raise on the first malformed record, or (skip_malformed=True) count it and go on.

    Readers call `counter.report(DataFormatError(...))` for every bad record; `count` is the number
    skipped and `first_errors` keeps a few messages for the log.
    """

    def __init__(self, skip_malformed: bool = False, keep: int = 5):
        self.skip_malformed = skip_malformed
        self.count = 0
        self.first_errors: list[str] = []
        self._keep = keep

    def report(self, error: DataFormatError) -> None:
        if not self.skip_malformed:
            raise error
        self.count += 1
        if len(self.first_errors) < self._keep:
            self.first_errors.append(str(error))

    def log(self, what: str) -> None:
        """Logs a warning when records were skipped (no-op otherwise)."""
        if self.count:
            from absl import logging  # local import: errors.py stays dependency-free for plain use
            logging.warning("%s: skipped %d malformed record(s); first: %s", what, self.count,
                                            " | ".join(self.first_errors))
