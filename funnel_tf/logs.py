"""Quiet by default: hide TensorFlow's C++ INFO / WARNING lines in the entry points.

Two sources: lines TF's C++ code logs once absl logging is set up obey `TF_CPP_MIN_LOG_LEVEL`
(read when the library loads, so it must be set before `import tensorflow`); the lines logged
while TF loads ("WARNING: All log messages before absl::InitializeLog() ...", oneDNN / CUDA /
CPU-feature notices) ignore it in TF >= 2.17, so `quiet_tensorflow()` makes the first
`import tensorflow` run with the C-level stderr captured and passes on every captured line except
those INFO / WARNING ones. A
`TF_CPP_MIN_LOG_LEVEL` the user set is kept and nothing is filtered: `TF_CPP_MIN_LOG_LEVEL=0
funnel-finetune ...` shows everything again.
"""

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile

# 2: errors only (1 would keep WARNING lines, 0 everything).
QUIET_LEVEL = "2"
# INFO / WARNING lines of absl / TF's C++ logging while TF loads (and their continuation lines).
_LOAD_NOISE = re.compile(r"^([IW]\d{4} \d\d:\d\d:\d\d|WARNING: All log messages before absl::InitializeLog|"
                         r"To enable the following instructions:|This TensorFlow binary is optimized|"
                         r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IW] )"
                         # Error-level lines that are no error: the CUDA plugins registered twice
                         # (TF 2.19) and cuInit failing on a machine without a usable GPU.
                         r"|^([EW]\d{4} \d\d:\d\d:\d\d|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [EW] )"
                         r".*(Unable to register cu\w+ factory|computation placer already registered|"
                         r"failed call to cuInit)")


def quiet_tensorflow() -> bool:
    """Set TF_CPP_MIN_LOG_LEVEL=2 and make the first `import tensorflow` quiet, unless the user set the
    level or TF is already imported; True when it took effect. Call it first thing in an entry point;
    TF itself is still imported only when the entry point imports it (flag errors stay fast)."""
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ or "tensorflow" in sys.modules:
        return False
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = QUIET_LEVEL
    if not any(isinstance(f, _QuietImportFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietImportFinder())
    return True


class _QuietImportFinder(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` with the other finders once, wrapping its loader so the import runs with
    stderr captured (`_filtered_stderr`); then steps aside."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path[:] = [f for f in sys.meta_path if f is not self]
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    """The real loader, with `exec_module` under `_filtered_stderr`; everything else delegated."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = self._loader
        with _filtered_stderr():
            self._loader.exec_module(module)
            try:  # device discovery (cuInit) logs too; it does not start TF's runtime
                module.config.list_physical_devices()
            except Exception:  # noqa: BLE001 - quietness must never break the import
                pass

    def __getattr__(self, name):
        return getattr(self._loader, name)


@contextlib.contextmanager
def _filtered_stderr():
    """File descriptor 2 captured; on exit, what is not load-time noise is written back to stderr."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real stderr (e.g. some notebooks)
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
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
