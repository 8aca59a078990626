"""SIGTERM outside the training loop: a preempted pod is told to go while a run evaluates at the
end, predicts or exports; by default Python dies where it stands (temp folders and the model_dir
lock left behind). Inside `sigterm_interrupts()` it raises `RunInterrupted` (a KeyboardInterrupt,
as Ctrl-C), so `finally` blocks clean up and the entry point exits 75 (rerun to finish)."""

from __future__ import annotations

import contextlib
import signal
import threading


class RunInterrupted(KeyboardInterrupt):
    """SIGTERM outside the training loop (which handles it itself): stop like Ctrl-C, so what
    was being written is cleaned up and the model_dir lock is released."""


@contextlib.contextmanager
def sigterm_interrupts():
    """While active (main thread only), SIGTERM raises RunInterrupted instead of killing the
    process at once; the training loop installs its own handler while it runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise RunInterrupted("SIGTERM")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
