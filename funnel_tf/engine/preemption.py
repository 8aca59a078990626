"""Preemption, in one place: every stop request a run can get (SIGTERM from a preempted VM or
pod, Ctrl-C, TF's own preemption notice) and what it does.

Inside the training loop (`Preemption.watching`): SIGTERM and a first Ctrl-C ask the loop to save
at its next host-call boundary and return `preempted=True` (entry points exit 75); a second Ctrl-C
aborts at once (KeyboardInterrupt). With several workers each boundary sums every worker's 0/1
stop flag in one all-reduce (`agree`), so a notice that reaches one worker stops all of them at
the same step. TF's PreemptionCheckpointHandler is used as well where TF implements it
(strategy.tf_preemption_handler_works); where it watches SIGTERM itself it saves through the
loop's checkpoint and the run returns preempted too.

Outside the loop (`sigterm_interrupts`): a preempted pod told to go while a run evaluates at the
end, predicts or exports would die where it stands (temp folders and the model_dir lock left
behind); there SIGTERM raises `RunInterrupted` (a KeyboardInterrupt, as Ctrl-C), so `finally`
blocks clean up and the entry point exits 75 (rerun to finish).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Callable, Dict, Optional, Tuple

import tensorflow as tf
from absl import logging

from funnel_tf.engine.strategy import StrategyInfo


class RunInterrupted(KeyboardInterrupt):
    """SIGTERM outside the training loop (which handles it itself): stop like Ctrl-C, so what
    was being written is cleaned up and the model_dir lock is released."""


class PreemptionSaved(Exception):
    """Raised by TF's PreemptionCheckpointHandler (our exit_fn) once it has saved: the loop
    returns `preempted=True` as on any other platform instead of exiting the process."""


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


class Preemption:
    """The training loop's stop requests: signal handlers, TF's handler, the workers' agreement.

    strategy, info:  the run's strategy and its `strategy_info`.
    handle_sigterm:  save and stop on SIGTERM (unless TF's handler watches SIGTERM itself here).
    handle_sigint:   Ctrl-C saves and stops (single host); a second one aborts at once.
    """

    def __init__(self, strategy: tf.distribute.Strategy, info: StrategyInfo,
                 handle_sigterm: bool = True, handle_sigint: bool = True):
        self.strategy, self.info = strategy, info
        self.handle_sigterm, self.handle_sigint = handle_sigterm, handle_sigint
        self._requested = threading.Event()
        self.reason = "request"
        self.tf_handler = None
        self._agree: Optional[Callable[[bool, bool], Tuple[bool, bool]]] = None

    @property
    def requested(self) -> bool:
        """Whether this process was asked to stop (its own flag, before any agreement)."""
        return self._requested.is_set()

    def request(self, reason: str = "request") -> None:
        """Ask the loop to save and return at its next host-call boundary (thread-safe)."""
        self.reason = reason
        self._requested.set()

    @contextlib.contextmanager
    def watching(self, checkpoint):
        """While training: TF's handler (where it works; `self.tf_handler`, saving through
        `checkpoint.save`) and our SIGTERM / SIGINT handlers, put back on the way out."""
        self.tf_handler = self._make_tf_handler(checkpoint)
        handler = self.tf_handler
        # Our SIGTERM save wherever TF's handler does not catch SIGTERM itself (no handler; GCE
        # GPU VMs, where it polls the maintenance event; Borg TPUs, told by the cluster).
        tf_watches_sigterm = handler is not None and getattr(
            signal.getsignal(signal.SIGTERM), "__self__", None) is handler
        previous = self._install_signal_handlers(sigterm=not tf_watches_sigterm)
        try:
            scope = handler.watch_preemption_scope() if (
                handler is not None and self.info.kind == "tpu") else contextlib.nullcontext()
            with scope:
                yield self
        finally:
            for signum, old in previous.items():
                signal.signal(signum, old)

    def run(self, train_fn, *args) -> None:
        """One host call, through TF's handler when there is one (it may raise PreemptionSaved)."""
        if self.tf_handler is not None:
            self.tf_handler.run(train_fn, *args)
        else:
            train_fn(*args)

    def agree(self, lost: bool) -> Tuple[bool, bool]:
        """(whether any worker was asked to stop, whether any worker lost the run lock). One
        process: its own flags. Several workers: a SUM all-reduce of the 0/1 flags, run by every
        worker at every host-call boundary (so they stop at the same step)."""
        if self._agree is None:
            self._agree = self._make_agreement()
        return self._agree(self.requested, lost)

    def describe(self) -> str:
        return self.reason if self.requested else "another worker's"

    # ------------------------------------------------------------------ internals
    def _multi_worker(self) -> bool:
        return self.info.kind == "multi_worker" and self.info.num_workers > 1

    def _make_agreement(self) -> Callable[[bool, bool], Tuple[bool, bool]]:
        if not self._multi_worker():
            return lambda stop, lost: (bool(stop), bool(lost))
        strategy = self.strategy

        @tf.function
        def flags_sum(flags):
            def replica(f):  # identity: a value on the replica's device (else no destination)
                return tf.distribute.get_replica_context().all_reduce(
                    tf.distribute.ReduceOp.SUM, tf.identity(f))
            return strategy.experimental_local_results(strategy.run(replica, args=(flags,)))[0]

        def any_worker(stop: bool, lost: bool) -> Tuple[bool, bool]:
            total = flags_sum(tf.constant([float(stop), float(lost)])).numpy()
            return bool(total[0] > 0), bool(total[1] > 0)
        return any_worker

    def _make_tf_handler(self, checkpoint):
        """TF's PreemptionCheckpointHandler where TF implements it (else None), saving through
        `checkpoint.save` (named by step, the run lock verified) and, on multi-worker platforms,
        raising PreemptionSaved instead of exiting (Borg TPUs keep TF's exit)."""
        if not self.info.supports_preemption_handler:
            return None

        def exit_fn():
            raise PreemptionSaved()

        config = tf.distribute.experimental.TerminationConfig(
            save_fn=lambda *args, **kwargs: checkpoint.save(wait=True),
            exit_fn=exit_fn if self.info.kind == "multi_worker" else None)
        # Restores the manager's latest checkpoint again (the one prepare() restored: the state
        # file points at it) and saves on a preemption notice.
        return tf.distribute.experimental.PreemptionCheckpointHandler(
            self.strategy.cluster_resolver, checkpoint.manager, termination_config=config)

    def _install_signal_handlers(self, sigterm: bool) -> Dict[int, object]:
        """SIGTERM (when `sigterm`) and SIGINT (single host) -> save and stop; a second SIGINT
        raises KeyboardInterrupt at once. Returns the previous handlers, to put back."""
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}
        if sigterm and self.handle_sigterm:
            def on_term(signum, frame):
                logging.warning("SIGTERM received: will save a checkpoint at the next loop "
                                "boundary")
                self.request("SIGTERM")
            previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, on_term)
        # Multi-worker: every worker must take part in a save, so one worker's Ctrl-C cannot.
        if self.handle_sigint and self.info.num_workers == 1:
            def on_int(signum, frame):
                if self.requested and self.reason == "Ctrl-C":
                    signal.signal(signal.SIGINT, signal.default_int_handler)
                    raise KeyboardInterrupt("second Ctrl-C: aborted without saving")
                logging.warning("Ctrl-C: will save a checkpoint at the next loop boundary and "
                                "stop (press Ctrl-C again to abort at once without saving)")
                self.request("Ctrl-C")
            previous[signal.SIGINT] = signal.signal(signal.SIGINT, on_int)
        return previous
