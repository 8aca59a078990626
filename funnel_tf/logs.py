"""Quiet by default: hide TensorFlow's C++ INFO / WARNING lines in the entry points.

Two sources: lines TF's C++ code logs once absl logging is set up obey `TF_CPP_MIN_LOG_LEVEL`
(read when the library loads, so it must be set before `import tensorflow`); the lines logged
while TF loads ("WARNING: All log messages before absl::InitializeLog() ...", oneDNN / CUDA /
CPU-feature notices) ignore it in TF >= 2.17, so `quiet_tensorflow()` imports TF with the C-level
stderr captured and passes on every captured line except those INFO / WARNING ones. A
`TF_CPP_MIN_LOG_LEVEL` the user set is kept and nothing is filtered: `TF_CPP_MIN_LOG_LEVEL=0
funnel-finetune ...` shows everything again.
"""

import os
import re
import sys
import tempfile

# 2: errors only (1 would keep WARNING lines, 0 everything).
QUIET_LEVEL = "2"
# INFO / WARNING lines of absl / TF's C++ logging while TF loads (and their continuation lines).
_LOAD_NOISE = re.compile(r"^([IW]\d{4} \d\d:\d\d:\d\d|WARNING: All log messages before absl::InitializeLog|"
                         r"To enable the following instructions:|This TensorFlow binary is optimized)")


def quiet_tensorflow() -> bool:
    """Set TF_CPP_MIN_LOG_LEVEL=2 and import TensorFlow quietly, unless the user set the level or TF is
    already imported; True when it took effect. Call it first thing in an entry point."""
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ or "tensorflow" in sys.modules:
        return False
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = QUIET_LEVEL
    _import_tensorflow_filtered()
    return True


def _import_tensorflow_filtered() -> None:
    """`import tensorflow` with file descriptor 2 captured; re-emit what is not load-time noise."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real stderr (e.g. some notebooks): plain import
        import tensorflow  # noqa: F401
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode("utf-8", errors="replace").splitlines()
            kept = [line for line in lines if not _LOAD_NOISE.match(line)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")


__all__ = ["quiet_tensorflow", "QUIET_LEVEL"]
