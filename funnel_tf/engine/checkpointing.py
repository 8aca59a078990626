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

`warm_start` loads a Funnel backbone from a converted checkpoint (Keras `*.weights.h5`, a
`save_pretrained` directory, or a TF object checkpoint such as one of our own training runs) and
fails loudly when the backbone would not be fully restored.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
import warnings
from typing import Dict, Mapping, Optional

import keras
import tensorflow as tf
from absl import logging
# private: the public tf.compat.v1.train.update_checkpoint_state cannot write relative paths
from tensorflow.python.checkpoint import checkpoint_management
# private: the Trackable base class has no public name (only tf.__internal__.tracking)
from tensorflow.python.trackable import base as trackable_base

from funnel_tf.errors import UserError
from funnel_tf.engine import run_lock
from funnel_tf.engine import checkpoint_files


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that cannot be used as asked; the message names the path and the problem."""


def is_trackable(obj) -> bool:
    """True if `obj` (e.g. a tf.data iterator) can be stored in a tf.train.Checkpoint.

    Plain tf.data iterators are; distributed iterators (MirroredStrategy, TPUStrategy) are not in
    TF 2.19-2.21, so the loop falls back to replaying the input (see loop.py).
    """
    return isinstance(obj, trackable_base.Trackable)


def model_weights(model: keras.Model) -> Dict[str, tf.Variable]:
    """{variable path: variable} for the trainable variables of `model` (a repeated path gets a
    '#k' suffix). Paths are stable for a given model code and config, so they key checkpoints.

    Why explicit tables: `tf.train.Checkpoint` follows object attributes, and Keras 3 layers held in
    nested Python lists (or Keras `SeedGenerator` states) are not reachable that way, so a plain
    `Checkpoint(model=...)` can silently skip them.
    """
    out = {}
    for v in model.trainable_variables:
        key, k = v.path, 1
        while key in out:
            k += 1
            key = f"{v.path}#{k}"
        out[key] = v
    return out


class CheckpointMismatchError(CheckpointError):
    """The model_dir's checkpoint was written by another objective or model config."""


class UnreadableCheckpointError(CheckpointError):
    """Checkpoint files exist but none of them can be read (truncated, corrupt, incomplete)."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint could not be written (disk full, no permission); the previous one is intact."""


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

        Unreadable newer checkpoints are skipped with a warning. Raises UnreadableCheckpointError
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
        raise UnreadableCheckpointError(
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
        raise UnreadableCheckpointError(
            f"{prefix}: checkpoint is truncated or unreadable "
            f"({checkpoint_files.first_line(e)})") from e
    except KeyError as e:
        raise CheckpointError(f"{prefix}: not a funnel-tf training checkpoint (no step)") from e


def resolve_checkpoint(path: str) -> str:
    """A checkpoint prefix from a prefix or a directory (its newest readable checkpoint, also
    under `<path>/checkpoints`); CheckpointError when there is none or none is readable."""
    if tf.io.gfile.isdir(path):
        for directory in (path, os.path.join(path, "checkpoints")):
            candidates = [p for p in checkpoint_files.find_checkpoints(directory)] or \
                checkpoint_files.find_checkpoints(directory, "model.ckpt")
            if not candidates:
                latest = tf.train.latest_checkpoint(directory)
                candidates = [latest] if latest else []
            if not candidates:
                continue
            reasons = []
            for prefix in candidates:
                reason = checkpoint_files.unreadable_reason(prefix)
                if reason is None:
                    if reasons:
                        logging.warning("using %s; skipped unreadable: %s", prefix,
                                        "; ".join(reasons))
                    return prefix
                reasons.append(f"{os.path.basename(prefix)}: {reason}")
            raise UnreadableCheckpointError(
                f"{directory}: no readable checkpoint: {'; '.join(reasons)}")
        raise CheckpointError(f"{path}: directory holds no TF checkpoint")
    if not tf.io.gfile.exists(path + ".index"):
        raise CheckpointError(f"{path}: not a checkpoint (no {path}.index)")
    reason = checkpoint_files.unreadable_reason(path)
    if reason is not None:
        raise UnreadableCheckpointError(f"{path}: checkpoint cannot be read: {reason}")
    return path


# ---------------------------------------------------------------------------------- warm start
# Models of our training checkpoints whose backbone can warm-start another run.
_WARM_START_MODELS = ("model", "discriminator")


def weights_file(path: str) -> Optional[str]:
    """The Keras weights file `path` names: itself (an existing `*.weights.h5`) or the one
    `*.weights.h5` in a folder (as `save_pretrained` writes); None when there is none.
    CheckpointError when a folder holds several, since picking one would be a guess."""
    if path.endswith(".weights.h5") and tf.io.gfile.exists(path):
        return path
    if tf.io.gfile.isdir(path):
        found = sorted(tf.io.gfile.glob(os.path.join(path, "*.weights.h5")))
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise CheckpointError(f"{path}: several *.weights.h5 files {found}; pass one of them")
    return None


def _check_h5_opens(path: str) -> None:
    """CheckpointReadError (one line, the file named) if h5py cannot open `path`: a truncated
    download is caught here, before it looks like a model mismatch."""
    import h5py

    from funnel_tf.checkpoints.errors import read_error
    try:
        if os.path.exists(path):
            h5py.File(path, "r").close()
    except (OSError, ValueError) as e:
        raise read_error(path, e, "HDF5 weights file") from e


def _load_weights_strictly(model: keras.Model, path: str) -> None:
    """`model.load_weights(path)`, but Keras' "skipping ... will retain their freshly-initialized
    weights" warnings (a partial load) become an error."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.load_weights(path)
    partial = [str(w.message) for w in caught
               if "retain" in str(w.message) or "Skipping" in str(w.message)]
    if partial:
        raise CheckpointError(f"{path}: partial load into {model.name}: {partial[0][:300]}")


def warm_start(backbone: keras.Model, path: str,
               models: Optional[Mapping[str, keras.Model]] = None) -> str:
    """Initialise `backbone` (a FunnelModel/FunnelBaseModel) from the converted checkpoint `path`.

    Accepted: a Keras `*.weights.h5` file (or a directory holding exactly one, as written by
    `save_pretrained`) saved from the backbone itself or from one of `models` (a full head model;
    its backbone weights are then used); or one of our training checkpoints (directory or prefix),
    whose backbone weights are matched by variable path. Every backbone variable must be restored;
    otherwise this raises CheckpointError listing what was tried. Returns a one-line description.
    """
    h5 = weights_file(path)
    if h5 is not None:
        _check_h5_opens(h5)
        errors = []
        for name, target in [("backbone", backbone)] + list((models or {}).items()):
            try:
                _load_weights_strictly(target, h5)
                return f"{name} weights from {h5}"
            except Exception as e:  # keras raises ValueError/KeyError on a structure mismatch
                errors.append(f"{name}: {type(e).__name__}: {str(e)[:300]}")
        raise CheckpointError(f"{h5}: matches neither the backbone nor the head models:\n  "
                              + "\n  ".join(errors))
    prefix = resolve_checkpoint(path)
    tried = []
    # No pre-filter on the stored key names: the `weights/<model>/...` table entries are only edges
    # of the object graph, and a variable is stored once, often under the optimizer's path (every
    # checkpoint pretrain.py writes). The restore itself decides what matched.
    for name in _WARM_START_MODELS:
        table = model_weights(backbone)
        try:
            status = tf.train.Checkpoint(weights={name: table}).read(prefix)
        except (tf.errors.OpError, IndexError) as e:
            raise UnreadableCheckpointError(
                f"{prefix}: checkpoint is truncated or unreadable "
                f"({checkpoint_files.first_line(e)})") from e
        try:
            status.expect_partial().assert_existing_objects_matched()
        except AssertionError as e:
            tried.append(f"{name}: {str(e)[:300]}")
            continue
        return f"backbone ({len(table)} tensors) from training checkpoint {prefix} [{name}]"
    raise CheckpointError(
        f"{prefix}: no complete Funnel backbone of this config under any of "
        f"{list(_WARM_START_MODELS)} (another model size? pass the config the checkpoint was "
        f"trained with)" + ("; partial matches: " + "; ".join(tried) if tried else ""))
