"""Quiet by default: hide TensorFlow's log noise in the entry points, for the whole run.

`TF_CPP_MIN_LOG_LEVEL` (0 all, 1 no INFO, 2 no WARNING, 3 no ERROR; default here 2) is the one
knob, applied to all three sources of TensorFlow noise:
- C++ lines that obey it (it is set before `import tensorflow`, when the library reads it);
- C++ lines that ignore it: those logged while TF loads ("WARNING: All log messages before
  absl::InitializeLog() ...", oneDNN / CUDA / CPU-feature notices) and absl-logged ones later
  (`I0000 ... *.cc:N]`, even under TF_CPP_MIN_LOG_LEVEL=3; at 2 also the error-level lines that
  are no error: "oneDNN supports DT_INT64 only on platforms with AVX-512", the CUDA plugins
  registered twice, cuInit failing without a GPU). File descriptor 2 goes through a small filter
  process for the whole run: it drops those lines and passes everything else on (our own log
  lines, errors, tracebacks), and it outlives a crash, so nothing else is ever lost;
- TensorFlow's Python log lines, through its own logger or absl's ("Sharding callback duration"
  on every save, "Function ... contains input name(s) ... unsupported characters" on every
  export, AutoGraph notices): records from TensorFlow's (and Keras', tf.text's, TFDS') own
  modules below the level are dropped; our own log lines (also absl's) are kept.
`TF_CPP_MIN_LOG_LEVEL=0 funnel-finetune ...` shows everything again.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import subprocess
import sys
from typing import Optional

# 2: errors only (1 would keep WARNING lines, 0 everything).
QUIET_LEVEL = "2"
_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}
# A C++ log line: absl's `I0000 00:00:1700000000.123 12345 file.cc:42] ...` or TF's older
# `2024-01-01 00:00:00.123: I tensorflow/...`. Python's absl lines (`... runner.py:233] ...`,
# our own progress lines) are not matched: only C/C++ source files.
_CPP_LINE = re.compile(r"^(?:(?P<a>[IWEF])\d{4} \d\d:\d\d:\d\S*\s+\d+ [^\s:]+\.(?:cc|h|cpp|c):\d+\] "
                       r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: (?P<b>[IWEF]) )")
# INFO-level text without a log prefix: the load banner and a continuation line.
_INFO_TEXT = re.compile(r"^(WARNING: All log messages before absl::InitializeLog|"
                        r"To enable the following instructions:)")
# Error-level C++ lines that are no error (hidden from level 2 on, as the INFO lines they are).
_HARMLESS_ERRORS = re.compile(r"oneDNN supports DT_INT64 only on platforms with AVX-512|"
                              r"Unable to register cu\w+ factory|computation placer already "
                              r"registered|failed call to cuInit")

def noise(line: str, level: int) -> bool:
    """True when `line` (one line of stderr) is TensorFlow log noise hidden at `level`."""
    m = _CPP_LINE.match(line)
    if m is not None:
        severity = _SEVERITY[m.group("a") or m.group("b")]
        return severity < level or (level >= 2 and severity == 2
                                    and _HARMLESS_ERRORS.search(line) is not None)
    return level >= 1 and _INFO_TEXT.match(line) is not None


def filter_stream(level: int) -> None:
    """The filter process's main: stdin -> stdout line by line, without `noise` lines. Ctrl-C
    and SIGTERM are the run's to handle: this ends when the run's stderr closes (EOF)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    out = sys.stdout.buffer
    for raw in sys.stdin.buffer:
        if not noise(raw.decode("utf-8", "replace"), level):
            out.write(raw)
            out.flush()
    out.flush()


def _level() -> int:
    try:
        return max(0, int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", QUIET_LEVEL)))
    except ValueError:
        return int(QUIET_LEVEL)


def quiet_tensorflow() -> bool:
    """Apply TF_CPP_MIN_LOG_LEVEL (2 when the user set none) to every TF log source for the rest
    of the process; True when it filters anything (False at level 0, or when TF is already
    imported). Call it first thing in an entry point; TF itself is still imported only when the
    entry point imports it (flag errors stay fast)."""
    if "tensorflow" in sys.modules:
        return False
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", QUIET_LEVEL)
    level = _level()
    if level == 0:
        return False
    library_filter = _LibraryRecords(logging.WARNING if level == 1 else logging.ERROR)
    from absl import logging as absl_logging  # absl's own logger class (it finds the caller)

    absl_logging.get_absl_logger().addFilter(library_filter)   # absl.logging.* callers
    logging.getLogger("tensorflow").addFilter(library_filter)  # tf.get_logger() callers
    _filter_stderr(level)
    return True


# Packages whose Python log records count as TensorFlow's (not ours).
_LIBRARIES = ("tensorflow", "tensorflow_text", "keras", "tensorflow_datasets", "tf_keras")


class _LibraryRecords(logging.Filter):
    """Drops log records below `min_level` that come from the TensorFlow family's own modules
    (found by the record's source path, as TF logs through absl's logger too)."""

    def __init__(self, min_level: int):
        super().__init__()
        self.min_level = min_level
        self._roots = None

    def _library_roots(self):
        if self._roots is None:
            import importlib.util

            roots = []
            for name in _LIBRARIES:
                try:
                    spec = importlib.util.find_spec(name)  # finds, does not import
                except (ImportError, ValueError):
                    spec = None
                for folder in (spec.submodule_search_locations or []) if spec else []:
                    roots.append(os.path.join(os.path.realpath(folder), ""))
            self._roots = tuple(roots)
        return self._roots

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= self.min_level:
            return True
        path = os.path.realpath(record.pathname or "")
        return not path.startswith(self._library_roots())


_FILTER: Optional[subprocess.Popen] = None
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _filter_stderr(level: int) -> None:
    """Route file descriptor 2 through the filter process until the interpreter exits."""
    global _FILTER
    if _FILTER is not None:
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real stderr (e.g. some notebooks)
        return
    try:
        code = (f"import sys; sys.path.insert(0, {_PACKAGE_PARENT!r}); "
                f"from funnel_tf.logs import filter_stream; filter_stream({level})")
        proc = subprocess.Popen(  # its own session: Ctrl-C at the terminal is the run's alone
            [sys.executable, "-S", "-c", code], stdin=subprocess.PIPE, stdout=saved,
            stderr=saved, close_fds=True, start_new_session=True)
    except (OSError, ValueError):  # no interpreter to start (embedded Python): stay unfiltered
        os.close(saved)
        return
    os.dup2(proc.stdin.fileno(), 2)
    proc.stdin.close()  # fd 2 now holds the only write end here
    _FILTER = proc
    atexit.register(_restore_stderr, saved)


def _restore_stderr(saved: int) -> None:
    """At exit: fd 2 back to the real stderr (closing the pipe), then let the filter drain it."""
    global _FILTER
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os.dup2(saved, 2)
    os.close(saved)
    if _FILTER is not None:
        try:  # a child process of the run may still hold the pipe; do not wait for it
            _FILTER.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        _FILTER = None


__all__ = ["quiet_tensorflow", "QUIET_LEVEL", "noise"]
