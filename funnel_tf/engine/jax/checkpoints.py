"""JAX-engine checkpoints through Orbax: one CheckpointManager step per save
(`checkpoints/jax_<step>/`, items `state` = every model and optimizer variable as numpy, `meta` =
step, non-finite count, each variable's path, shape, dtype and CRC-32), written asynchronously,
the newest `keep` kept.

Orbax does the writing: a temporary folder renamed on finalize (gs://: a commit file, through
tensorstore), the primary host (process 0) alone writing in a multi-process job while every process
takes part in the save. Restoring takes the newest readable one, skips a partial, unreadable or
corrupt one (a CRC-32 differing from the one saved) with a warning, and refuses one of other
variables. The older `.npz` format is refused in one line (OldCheckpointFormatError)."""

from __future__ import annotations

import os
import re
import zlib
from typing import Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from funnel_tf.checkpoints.errors import (CheckpointError, CheckpointMismatchError,
                                          CheckpointWriteError)
from funnel_tf.storage import is_local

PREFIX = "jax"                                  # Orbax's step_prefix: jax_<step>
PATTERN = re.compile(rf"^{PREFIX}_(\d+)$")
OLD_PATTERN = re.compile(r"^jax-(\d+)\.npz$")   # the format before Orbax
COMMIT_FILE = "commit_success.txt"              # Orbax's mark of a finalized step on gs://
ITEMS = ("state", "meta")
FORMAT = 1


def _quiet_orbax() -> None:
    """Drop Orbax's INFO records (some 40 a save, through absl's logger) from the run's log;
    its warnings and errors stay. Once per process."""
    import logging as py_logging

    absl_logger = py_logging.getLogger("absl")
    if not any(getattr(f, "funnel_orbax", False) for f in absl_logger.filters):
        def keep(record) -> bool:
            return record.levelno >= py_logging.WARNING or "/orbax/" not in record.pathname
        keep.funnel_orbax = True
        absl_logger.addFilter(keep)


class OldCheckpointFormatError(CheckpointError):
    """A model_dir holding JAX-engine checkpoints in the `.npz` format of an older funnel-tf."""


def checkpoint_dir(model_dir: str) -> str:
    return os.path.join(model_dir, "checkpoints")


def list_checkpoints(model_dir: str) -> List[Tuple[int, str]]:
    """[(step, path)] of the finalized JAX checkpoints in model_dir, newest first (Orbax's rule:
    a temporary folder is not one; on gs:// the commit file marks one). A folder of old `.npz`
    checkpoints is an OldCheckpointFormatError. A file listing: no JAX needed (the TF engine
    asks too)."""
    folder = checkpoint_dir(model_dir)
    if not tf.io.gfile.isdir(folder):
        return []
    names = [name.rstrip("/") for name in tf.io.gfile.listdir(folder)]
    old = sorted((int(m.group(1)), name) for name in names if (m := OLD_PATTERN.match(name)))
    if old:
        raise OldCheckpointFormatError(
            f"holds JAX-engine checkpoints written by an older funnel-tf ({old[-1][1]}, .npz); "
            f"this version reads Orbax checkpoints ({PREFIX}_<step>/) only: finish that run with "
            f"the older version or use a new --model_dir", source=folder)
    found = [(int(m.group(1)), os.path.join(folder, name))
             for name in names if (m := PATTERN.match(name))]
    if not is_local(folder):
        found = [(s, p) for s, p in found if tf.io.gfile.exists(os.path.join(p, COMMIT_FILE))]
    return sorted(found, reverse=True)


def has_tf_checkpoint(model_dir: str) -> bool:
    return tf.train.latest_checkpoint(checkpoint_dir(model_dir)) is not None


def checksum(array: np.ndarray) -> int:
    """CRC-32 of the array's bytes (tensorstore checks its index, not the values: a flipped bit
    in the data would load silently)."""
    return zlib.crc32(np.ascontiguousarray(array).reshape(-1).view(np.uint8))


def _one_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[0][:200]}" if lines else type(e).__name__


class JaxCheckpoints:
    """Save / restore {group: [(path, array)]} state of a run (groups: trainable, non_trainable,
    optimizer) plus the step and skipped-step count.

    write: this process is the chief. One process: only a writing one saves. Several (a
    jax.distributed job): every process calls save() in lockstep (Orbax's save is collective) and
    Orbax's primary host, process 0, alone writes files."""

    def __init__(self, model_dir: str, keep: int = 5, write: bool = True):
        self.model_dir, self.keep, self.write = model_dir, int(keep), write
        self.latest: Optional[str] = None      # newest saved (or being saved) / restored
        self.saved_step: Optional[int] = None
        self._manager = None
        self._pending: Optional[str] = None    # an async save not waited for yet

    # ------------------------------------------------------------------ Orbax
    def _options(self, **kw):
        import orbax.checkpoint as ocp

        _quiet_orbax()
        return ocp.CheckpointManagerOptions(step_prefix=PREFIX, **kw)

    def _writer(self):
        """The writing CheckpointManager, made at the first save (nothing is written before)."""
        if self._manager is None:
            import orbax.checkpoint as ocp

            self._manager = ocp.CheckpointManager(
                checkpoint_dir(self.model_dir), item_names=ITEMS, options=self._options(
                    max_to_keep=self.keep, enable_async_checkpointing=True,
                    cleanup_tmp_directories=True))  # a killed run's partial folders
        return self._manager

    def _reader(self):
        """A CheckpointManager that writes nothing (no folder, no clean-up; Orbax's read_only
        option would warn twice on every restore)."""
        import orbax.checkpoint as ocp

        return ocp.CheckpointManager(checkpoint_dir(self.model_dir), item_names=ITEMS,
                                     options=self._options(create=False))

    def _participates(self) -> bool:
        import jax

        return self.write or jax.process_count() > 1

    # ------------------------------------------------------------------ save
    def save(self, step: int, nonfinite: int, groups: Dict[str, List[Tuple[str, np.ndarray]]],
             wait: bool = False) -> Optional[str]:
        """Start an async save of `groups` at `step` (the previous one waited for first; a
        checkpoint at `step` or later, one that restore skipped, is replaced); `wait` blocks until
        it is written. Returns its path (None on a process that does not save)."""
        if not self._participates():
            return None
        import orbax.checkpoint as ocp

        self.wait()
        manager = self._writer()
        for stale in [s for s in manager.all_steps() if s >= step]:
            logging.warning("replacing checkpoint step %d (not restored: unreadable)", stale)
            manager.delete(stale)
        # Orbax's NumpyHandler copies host arrays before its async write (deepcopy_host_arrays):
        # an array from jax.device_get may be a view of a buffer that the next step reuses.
        state = {g: [np.asarray(a) for _, a in items] for g, items in groups.items()}
        meta = {"format": FORMAT, "step": int(step), "nonfinite": int(nonfinite),
                "groups": {g: [[path, list(a.shape), str(a.dtype), checksum(a)]
                               for (path, _), a in zip(items, state[g])]
                           for g, items in groups.items()}}
        path = os.path.join(checkpoint_dir(self.model_dir), f"{PREFIX}_{int(step)}")
        try:
            manager.save(int(step), force=True, args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))
        except Exception as e:  # noqa: BLE001 - disk full, permissions: name the path
            raise self._write_error(path, e) from None
        self.latest, self.saved_step, self._pending = path, int(step), path
        if wait:
            self.wait()
        return path

    def wait(self) -> None:
        """Block until an async save in flight is written; its failure is a CheckpointWriteError
        (the previous checkpoint is intact)."""
        if self._manager is None or self._pending is None:
            return
        path, self._pending = self._pending, None
        try:
            self._manager.wait_until_finished()
        except Exception as e:  # noqa: BLE001
            raise self._write_error(path, e) from None

    @staticmethod
    def _write_error(path: str, e: BaseException) -> CheckpointWriteError:
        return CheckpointWriteError(f"could not write this checkpoint ({_one_line(e)}); the "
                                    f"previous one is intact", source=path)

    # ------------------------------------------------------------------ restore
    def restore_latest(self, expected: Dict[str, List[Tuple[str, tuple]]]):
        """(step, nonfinite, {group: [array]}) of the newest readable checkpoint, or None. A
        checkpoint with other variables (another config or objective) is a
        CheckpointMismatchError; a partial, unreadable or corrupt one is skipped with a warning
        (on every process when any cannot read it)."""
        from funnel_tf.engine.jax import distributed

        if not list_checkpoints(self.model_dir):
            return None
        import orbax.checkpoint as ocp

        reader = self._reader()
        try:
            for step in sorted(reader.all_steps(), reverse=True):
                path = os.path.join(checkpoint_dir(self.model_dir), f"{PREFIX}_{step}")
                found, error = None, None
                try:
                    meta = reader.restore(step, args=ocp.args.Composite(
                        meta=ocp.args.JsonRestore()))["meta"]
                    self._check_same_variables(path, meta, expected)
                    state = reader.restore(step, args=ocp.args.Composite(
                        state=ocp.args.StandardRestore()))["state"]
                    found = (int(meta["step"]), int(meta["nonfinite"]), self._verified(meta, state))
                except CheckpointMismatchError:
                    raise
                except Exception as e:  # noqa: BLE001 - partial / corrupt: try an older one
                    error = _one_line(e)
                if distributed.agree(found is None):
                    logging.warning("checkpoint %s is unreadable (%s); trying an older one", path,
                                    error or "unreadable on another process")
                    continue
                self.latest, self.saved_step = path, found[0]
                return found
        finally:
            reader.close()
        return None

    @staticmethod
    def _check_same_variables(path: str, meta: dict, expected: Dict[str, List[Tuple[str, tuple]]]):
        for group, want in expected.items():
            got = [(p, tuple(s)) for p, s, *_ in meta["groups"].get(group, [])]
            want = [(p, tuple(s)) for p, s in want]
            if got != want:
                diff = [f"{p}{list(s)}" for p, s in set(got) ^ set(want)][:3]
                raise CheckpointMismatchError(
                    f"holds other {group} variables than this run's ({len(got)} vs {len(want)}; "
                    f"e.g. {', '.join(diff)}): another config or objective; use a new --model_dir",
                    source=path)

    @staticmethod
    def _verified(meta: dict, state: dict) -> Dict[str, List[np.ndarray]]:
        """The restored arrays by group, each checked against its saved shape, dtype and CRC-32."""
        out = {}
        for group, items in meta["groups"].items():
            arrays = [np.asarray(a) for a in state.get(group, [])]
            if len(arrays) != len(items):
                raise ValueError(f"{group}: {len(arrays)} arrays, {len(items)} saved")
            for (name, shape, dtype, crc), a in zip(items, arrays):
                if list(a.shape) != list(shape) or str(a.dtype) != dtype or checksum(a) != crc:
                    raise ValueError(f"{name}: its values differ from the ones saved (shape "
                                     f"{list(a.shape)}, dtype {a.dtype}, CRC-32 mismatch)")
            out[group] = arrays
        return out
