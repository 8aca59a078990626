"""Training checkpoints (exact resume) and warm starts from converted weights.

`TrainingCheckpoint` wraps `tf.train.Checkpoint` + `CheckpointManager` over the objective's models,
the optimizer (slots and iteration count), the global step and, when tf.data can save it, the input
iterator (so a resumed run sees exactly the batches it would have seen). Only the chief writes to
`<model_dir>/checkpoints`; other workers of a multi-worker job save to a scratch directory because
every worker must take part in a distributed save. Restores skip unreadable checkpoints (newest
readable wins, found by listing files) and refuse another objective's or config's before anything
changes; failed saves leave no partial files (checkpoint_files.py has the file-level checks).
Saves may be asynchronous (TF's async checkpointing: the values are copied to host memory, the
files written by a background thread, so a TPU is not stalled while gs:// is written); `wait()`
blocks until the write is complete, and the `checkpoint` state file (what restores and `latest`
read) names a checkpoint only once its files are complete. Every save first re-checks the
model_dir's run lock held by this process (run_lock.verify_held): a run whose lock was deleted or
taken over stops with RunLockLostError before it writes.

Warm starts (`--init_checkpoint`) are `funnel_tf.checkpoints`' (resolver.py, training.py).
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
from typing import Mapping, Optional

import keras
import tensorflow as tf
from absl import logging
# private: the public tf.compat.v1.train.update_checkpoint_state cannot write relative paths
from tensorflow.python.checkpoint import checkpoint_management
# private: the Trackable base class has no public name (only tf.__internal__.tracking)
from tensorflow.python.trackable import base as trackable_base

from funnel_tf.engine import run_lock
from funnel_tf.engine import checkpoint_files
# One error family (checkpoints/errors.py); reading a checkpoint's tables is checkpoints/training.py's.
from funnel_tf.checkpoints.errors import (  # noqa: F401 (the engine's names)
    CheckpointError, CheckpointMismatchError, CheckpointReadError, CheckpointWriteError)
from funnel_tf.checkpoints.training import model_weights, resolve_checkpoint  # noqa: F401


def is_trackable(obj) -> bool:
    """True if `obj` (e.g. a tf.data iterator) can be stored in a tf.train.Checkpoint.

    Plain tf.data iterators are; distributed iterators (MirroredStrategy, TPUStrategy) are not in
    TF 2.19-2.21, so the loop falls back to replaying the input (see loop.py).
    """
    return isinstance(obj, trackable_base.Trackable)


class TrainingCheckpoint:
    """Save every N steps, keep K, restore the newest readable one; the manager's `step_counter`
    is the step.

    Restore finds checkpoints by listing files (the `checkpoint` state file may be stale or gone),
    skips unreadable ones with a warning, and never starts from scratch silently: a directory with
    checkpoint files of which none is readable, or one written by another objective / model
    config, raises before anything in it changes. A failed save (e.g. disk full) removes its
    partial files and raises CheckpointWriteError; older checkpoints stay as they were.
    """

    def __init__(self, model_dir: str, items: Mapping[str, object], step: tf.Variable,
                 keep: int = 5, is_chief: bool = True, data_iterator=None,
                 async_save: bool = False):
        self.model_dir = model_dir
        self.is_chief = is_chief
        self.async_save = async_save
        self._pending: Optional[str] = None    # prefix of an async save not yet waited for
        self.step = step
        self.keep = keep
        self._items = dict(items)
        self.chief_directory = os.path.join(model_dir, "checkpoints")
        self.directory = self.chief_directory
        if not is_chief:
            # Every worker takes part in a distributed save; the others write to scratch space,
            # removed when the process exits (a killed one leaves it to the tmp cleaner).
            self.directory = tempfile.mkdtemp(prefix="funnel_ckpt_worker_")
            atexit.register(shutil.rmtree, self.directory, ignore_errors=True)
        self.data_iterator = data_iterator if data_iterator is not None and is_trackable(
            data_iterator) else None
        self.saved_step: Optional[int] = None  # step of the newest checkpoint on disk (restored
                                               # or saved by this run)
        self._unreadable: set = set()          # prefixes restore skipped; replaced when saved
        self._make()

    def _make(self):
        items = dict(self._items, step=self.step)
        models = {k: v for k, v in self._items.items() if isinstance(v, keras.Model)}
        # Explicit variable tables (see model_weights/model_state): attribute tracking alone misses
        # layers kept in nested Python lists and Keras' dropout seed states.
        items["weights"] = {k: model_weights(m) for k, m in models.items()}
        items["state"] = {k: list(m.non_trainable_variables) for k, m in models.items()}
        if self.data_iterator is not None:
            items["data"] = self.data_iterator
        self.checkpoint = tf.train.Checkpoint(**items)
        self._make_manager()

    def _make_manager(self):
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.directory,
                                                  max_to_keep=self.keep, step_counter=self.step,
                                                  checkpoint_name="ckpt")

    @property
    def saves_data(self) -> bool:
        return self.data_iterator is not None

    @property
    def latest(self) -> Optional[str]:
        """The newest complete checkpoint (an async save in flight is not named until done)."""
        return self.manager.latest_checkpoint

    def _options(self) -> Optional[tf.train.CheckpointOptions]:
        if not self.async_save:
            return None
        _keras_variables_copy_once()
        return tf.train.CheckpointOptions(enable_async=True)

    def restore_latest(self) -> Optional[str]:
        """Restore the newest readable checkpoint of the chief's directory (every worker reads
        the same one), if there is any checkpoint; returns its path.

        Unreadable newer checkpoints are skipped with a warning. Raises CheckpointReadError
        when checkpoint files exist but none can be read, CheckpointMismatchError when the newest
        readable one belongs to another objective or model config. Writes nothing unless a
        checkpoint was restored (then a stale `checkpoint` state file is rewritten on the chief).
        """
        candidates = checkpoint_files.find_checkpoints(self.chief_directory)
        if not candidates:
            self._refuse_foreign_checkpoints()
            return None
        skipped = []
        for path in candidates:
            reason = checkpoint_files.unreadable_reason(path)
            if reason is None:
                reason = self._restore(path)
            if reason is None:
                if skipped:
                    logging.warning("resumed from %s, the newest readable checkpoint; skipped: %s",
                                    path, "; ".join(skipped))
                self._sync_state(path, candidates)
                self.saved_step = int(self.step.numpy())
                logging.info("restored %s (step %d)", path, self.saved_step)
                return path
            logging.warning("skipping checkpoint %s: %s", path, reason)
            self._unreadable.add(path)
            skipped.append(f"{os.path.basename(path)}: {reason}")
        raise CheckpointReadError(
            f"{self.chief_directory}: holds checkpoint files but none can be read: "
            f"{'; '.join(skipped)}. Restore them from a copy, or move them away (or use another "
            f"--model_dir) to start from scratch")

    def _refuse_foreign_checkpoints(self) -> None:
        """No ckpt-<step> here: refuse rather than start from scratch when model_dir is itself a
        checkpoints folder (--model_dir=RUN/checkpoints) or its checkpoints/ holds other files."""
        own = checkpoint_files.find_checkpoints(self.model_dir)
        if own or tf.io.gfile.exists(os.path.join(self.model_dir, "checkpoint")):
            names = ", ".join(os.path.basename(p) for p in own[:3]) or "a `checkpoint` file"
            raise CheckpointError(
                f"{self.model_dir}: holds training checkpoints itself ({names}), but a run keeps "
                f"them in {self.chief_directory}: to resume that run pass its parent folder "
                f"(--model_dir={os.path.dirname(self.model_dir.rstrip('/'))}); to start a new run "
                f"use an empty folder")
        foreign = tf.io.gfile.glob(os.path.join(self.chief_directory, "*.index"))
        if foreign:
            raise CheckpointError(
                f"{self.chief_directory}: holds checkpoints not written by a training run "
                f"({', '.join(sorted(os.path.basename(p) for p in foreign)[:3])}); move them away "
                f"or use another --model_dir (to initialise from them, pass --init_checkpoint)")

    def _restore(self, path: str) -> Optional[str]:
        """Restore `path`; returns why it is unreadable, None on success; raises on a mismatch."""
        self._check_same_models(path)
        if self.data_iterator is not None and "data" not in checkpoint_files.top_level_names(path):
            logging.warning("%s holds no input-iterator state; the input will be replayed", path)
            self.data_iterator = None
            self._make()
        try:
            status = self.checkpoint.restore(path)
            status.expect_partial().assert_existing_objects_matched()
        except AssertionError as e:
            found = re.search(r"Found (\d+) Python objects", str(e))
            count = f"{found.group(1)} of this run's variables" if found else "variables of this run"
            raise CheckpointMismatchError(
                f"{path}: was written by another objective or model config ({count} "
                f"are not in it). Resume with the objective and config of that run, or use a new "
                f"--model_dir") from e
        except ValueError as e:  # shape mismatch
            raise CheckpointMismatchError(
                f"{path}: was written by another objective or model config "
                f"({checkpoint_files.first_line(e)}). Resume with the objective and config of that "
                f"run, or use a new --model_dir") from e
        except Exception as e:  # noqa: BLE001 - sorted into corrupt files vs transient failures
            if "restore dataset iterator" in str(e):  # fine files, another input pipeline
                raise CheckpointMismatchError(
                    f"{path}: its saved input position does not fit this run's input pipeline "
                    f"(training data, batch size or sequence length changed?). Resume with the "
                    f"same input settings, or pass --data_resume=replay (skip as many batches of "
                    f"the new input) or --data_resume=restart") from e
            if checkpoint_files.is_corruption(e):
                return f"truncated or corrupt ({checkpoint_files.first_line(e)})"
            if isinstance(e, tf.errors.OpError):
                raise CheckpointError(
                    f"{path}: could not be read ({checkpoint_files.first_line(e)}); nothing was "
                    f"changed, retry when the storage is reachable") from e
            raise
        return None

    def _check_same_models(self, path: str) -> None:
        """Refuse a checkpoint whose models (by name) differ from this run's (another objective)
        or hold another number of weight tensors (another config: a restore would only check
        that ours are present, so a deeper model's checkpoint would load partially)."""
        ours = {k: len(model_weights(v)) for k, v in self._items.items()
                if isinstance(v, keras.Model)}
        try:
            stored = checkpoint_files.table_sizes(path)
        except Exception:  # noqa: BLE001 - unreadable graphs are reported by the restore
            return
        if not stored:
            return  # not written by TrainingCheckpoint: the restore's own matching decides
        if sorted(stored) != sorted(ours):
            raise CheckpointMismatchError(
                f"{path}: was written by another objective (its models: "
                f"{', '.join(sorted(stored))}; this run's: {', '.join(sorted(ours))}). Resume "
                f"with the objective of that run, or use a new --model_dir")
        for name in sorted(ours):
            if stored[name] != ours[name]:
                raise CheckpointMismatchError(
                    f"{path}: was written by another model config ({name} has {stored[name]} "
                    f"weight tensors there, {ours[name]} in this run). Resume with the config of "
                    f"that run, or use a new --model_dir")

    def _sync_state(self, restored: str, candidates) -> None:
        """Point the `checkpoint` state file (what CheckpointManager and TF's preemption handler
        read) at the restored checkpoint when it named another one or missed files (chief)."""
        state = tf.train.get_checkpoint_state(self.chief_directory)
        older = [p for p in reversed(candidates)
                 if checkpoint_files.step_of(p) <= checkpoint_files.step_of(restored)
                 and tf.io.gfile.exists(p + ".index")]
        # Full paths: a state file with absolute paths of another location (a copied model_dir)
        # would make the manager delete old checkpoints there.
        if state is not None and state.model_checkpoint_path == restored and \
                list(state.all_model_checkpoint_paths) == older[-self.keep:]:
            return
        if not self.is_chief:
            return
        run_lock.verify_held(self.model_dir)
        # What CheckpointManager itself writes (relative names), without v1's deprecation notice.
        try:
            checkpoint_management.update_checkpoint_state_internal(
                self.chief_directory, restored, all_model_checkpoint_paths=older[-self.keep:],
                save_relative_paths=True)
        except (OSError, tf.errors.OpError) as e:
            what = "no space left on device" if checkpoint_files.is_out_of_space(e) else \
                checkpoint_files.first_line(e)
            raise CheckpointWriteError(
                f"{os.path.join(self.chief_directory, 'checkpoint')}: cannot update the "
                f"checkpoint state file: {what}. Free space (or fix the permissions) and restart "
                f"with the same --model_dir") from e
        self._make_manager()

    def save(self, wait: bool = False) -> str:
        """Save at the current step (asynchronously with `async_save`, unless `wait`: a
        preemption or the end of training). If tf.data cannot serialise the input iterator, drop
        it from the checkpoint (with a warning) and save the rest; the caller learns it via
        `saves_data`. A failed write (disk full, permissions) removes its partial files and raises
        CheckpointWriteError naming the path (for an async write: at the next save or `wait()`);
        earlier checkpoints stay intact."""
        run_lock.verify_held(self.model_dir)  # still this run's model_dir, or nothing is written
        self.wait()  # the previous async write first: its failure is reported as its own
        step = int(self.step.numpy())
        prefix = os.path.join(self.directory, f"ckpt-{step}")
        if prefix in self._unreadable:  # the broken files restore skipped: delete, then write
            self._unreadable.discard(prefix)
            checkpoint_files.remove_partial_save(prefix)
        try:
            try:
                path = self.manager.save(checkpoint_number=step, options=self._options())
            except (tf.errors.UnimplementedError, tf.errors.FailedPreconditionError,
                    tf.errors.InvalidArgumentError) as e:
                if self.data_iterator is None:
                    raise
                logging.warning("the input pipeline cannot be checkpointed (%s); checkpoints "
                                "will not include the data position and a resume will replay "
                                "the input instead", checkpoint_files.first_line(e)[:200])
                self.data_iterator = None
                self._make()
                self._cleanup(step)
                path = self.manager.save(checkpoint_number=step, options=self._options())
        except KeyboardInterrupt:  # a second Ctrl-C during the save: leave no partial files
            # (it lands between TF ops: a checkpoint whose merge finished is complete; keep it)
            prefix = os.path.join(self.directory, f"ckpt-{step}")
            self._cleanup(step, keep_complete=checkpoint_files.unreadable_reason(prefix) is None)
            raise
        except (OSError, tf.errors.OpError) as e:
            self._write_failed(step, e)
        self.saved_step = step
        if self.async_save:
            self._pending = prefix
            if wait:
                self.wait()
            elif self.is_chief:
                logging.info("saving checkpoint %s in the background", path)
            return path
        if self.is_chief:
            logging.info("saved checkpoint %s", path)
        return path

    def wait(self) -> None:
        """Block until an async save in flight is written (and the state file names it); a
        failed write removes its partial files and raises CheckpointWriteError."""
        prefix, self._pending = self._pending, None
        if prefix is None:
            return
        self.checkpoint.sync()
        helper = getattr(self.checkpoint, "_async_checkpointer_impl", None)
        error = getattr(helper, "_async_error", None)  # TF reports it only at the next save
        if error is not None:
            helper._async_error = None
        elif checkpoint_files.unreadable_reason(prefix) is None and \
                self.manager.latest_checkpoint == prefix:
            if self.is_chief:
                logging.info("saved checkpoint %s", prefix)
            return
        step = checkpoint_files.step_of(prefix)
        self.saved_step = self._previous_step(step)
        self._write_failed(step, error or OSError(f"{prefix}: incomplete after the write"))

    def _previous_step(self, step: int) -> Optional[int]:
        latest = self.manager.latest_checkpoint
        return checkpoint_files.step_of(latest) if latest and latest != os.path.join(
            self.directory, f"ckpt-{step}") else None

    def _write_failed(self, step: int, e: BaseException):
        """Remove the partial files of checkpoint `step` and raise CheckpointWriteError."""
        prefix = os.path.join(self.directory, f"ckpt-{step}")
        self._cleanup(step)
        what = "no space left on device" if checkpoint_files.is_out_of_space(e) else \
            checkpoint_files.first_line(e)
        previous = f"the previous checkpoint (step {self.saved_step}) is intact" \
            if self.saved_step is not None and self.saved_step != step else \
            "no earlier checkpoint exists"
        raise CheckpointWriteError(
            f"{prefix}: cannot write the checkpoint: {what}; {previous}. Free space (or fix "
            f"the permissions) and restart with the same --model_dir") from e

    def _cleanup(self, step: int, keep_complete: bool = False) -> None:
        prefix = os.path.join(self.directory, f"ckpt-{step}")
        removed = checkpoint_files.remove_partial_save(prefix, temp_only=keep_complete)
        if removed:
            logging.warning("removed the partial checkpoint files %s", removed)
        self._make_manager()  # forget the failed path (the state file names the earlier ones)


def _keras_variables_copy_once() -> None:
    """Let TF's async checkpointing save Keras 3 variables more than once.

    TF copies every variable to its host copy in a tf.function before each async write; Keras 3's
    `Variable._copy_trackable_to_cpu` (keras/src/backend/tensorflow/core.py, 3.x) makes a new
    tf.Variable on every call, which that function refuses from its second save on ("tf.function
    only supports singleton tf.Variables"). The Keras variable's host copy is its tf.Variable's
    own host copy (same value, same checkpoint key), which TF creates once and then assigns."""
    from keras.src.backend.tensorflow import core

    if getattr(core.Variable._copy_trackable_to_cpu, "_funnel_copy_once", False):
        return

    def copy_trackable_to_cpu(self, object_map):
        self.value._copy_trackable_to_cpu(object_map)
        object_map[self] = object_map[self.value]
    copy_trackable_to_cpu._funnel_copy_once = True
    core.Variable._copy_trackable_to_cpu = copy_trackable_to_cpu


def read_step(path: str) -> int:
    """The global step stored in a training checkpoint (prefix or directory)."""
    prefix = resolve_checkpoint(path)
    try:
        reader = checkpoint_files.open_reader(prefix)
        return int(reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"))
    except (tf.errors.OpError, IndexError) as e:
        raise CheckpointReadError(
            f"{prefix}: checkpoint is truncated or unreadable "
            f"({checkpoint_files.first_line(e)})") from e
    except KeyError as e:
        raise CheckpointError(f"{prefix}: not a funnel-tf training checkpoint (no step)") from e
