"""Training checkpoints (exact resume) and warm starts from converted weights.

`TrainingCheckpoint` wraps `tf.train.Checkpoint` + `CheckpointManager` over the objective's models,
the optimizer (slots and iteration count), the global step and, when tf.data can save it, the input
iterator (so a resumed run sees exactly the batches it would have seen). Only the chief writes to
`<model_dir>/checkpoints`; other workers of a multi-worker job save to a scratch directory because
every worker must take part in a distributed save.

`warm_start` loads a Funnel backbone from a converted checkpoint (Keras `*.weights.h5`, a
`save_pretrained` directory, or a TF object checkpoint such as one of our own training runs) and
fails loudly when the backbone would not be fully restored.
"""

from __future__ import annotations

import glob
import os
import tempfile
import warnings
from typing import Dict, Mapping, Optional

import keras
import tensorflow as tf
from absl import logging
from tensorflow.python.trackable import base as trackable_base

from funnel_tf.errors import UserError


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


class TrainingCheckpoint:
    """Save every N steps, keep K, restore the latest; the manager's `step_counter` is the step."""

    def __init__(self, model_dir: str, items: Mapping[str, object], step: tf.Variable,
                 keep: int = 5, is_chief: bool = True, data_iterator=None):
        self.model_dir = model_dir
        self.is_chief = is_chief
        self.step = step
        self.keep = keep
        self._items = dict(items)
        self.chief_directory = os.path.join(model_dir, "checkpoints")
        self.directory = self.chief_directory if is_chief else \
            tempfile.mkdtemp(prefix="funnel_ckpt_worker_")
        self.data_iterator = data_iterator if data_iterator is not None and is_trackable(
            data_iterator) else None
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
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.directory,
                                                  max_to_keep=self.keep, step_counter=self.step,
                                                  checkpoint_name="ckpt")

    @property
    def saves_data(self) -> bool:
        return self.data_iterator is not None

    @property
    def latest(self) -> Optional[str]:
        return self.manager.latest_checkpoint

    def restore_latest(self) -> Optional[str]:
        """Restore the newest checkpoint of the chief's directory (every worker reads the same
        one), if any; returns its path."""
        path = tf.train.latest_checkpoint(self.chief_directory)
        if path is None:
            return None
        if self.data_iterator is not None and not any(
                k.startswith("data/") for k in tf.train.load_checkpoint(path)
                .get_variable_to_shape_map()):
            logging.warning("%s holds no input-iterator state; the input will be replayed", path)
            self.data_iterator = None
            self._make()
        status = self.checkpoint.restore(path)
        try:
            status.expect_partial().assert_existing_objects_matched()
        except AssertionError as e:
            raise CheckpointError(
                f"{path}: does not match this model/optimizer (different config or objective?): "
                f"{str(e)[:500]}") from e
        logging.info("restored %s (step %d)", path, int(self.step.numpy()))
        return path

    def save(self) -> str:
        """Save at the current step. If tf.data cannot serialise the input iterator, drop it from
        the checkpoint (with a warning) and save the rest; the caller learns it via `saves_data`."""
        try:
            path = self.manager.save(checkpoint_number=int(self.step.numpy()))
        except (tf.errors.UnimplementedError, tf.errors.FailedPreconditionError,
                tf.errors.InvalidArgumentError) as e:
            if self.data_iterator is None:
                raise
            logging.warning("the input pipeline cannot be checkpointed (%s); checkpoints will "
                            "not include the data position and a resume will replay the input "
                            "instead", str(e).splitlines()[0][:200])
            self.data_iterator = None
            self._make()
            path = self.manager.save(checkpoint_number=int(self.step.numpy()))
        if self.is_chief:
            logging.info("saved checkpoint %s", path)
        return path


def read_step(path: str) -> int:
    """The global step stored in a training checkpoint (prefix or directory)."""
    prefix = resolve_checkpoint(path)
    reader = tf.train.load_checkpoint(prefix)
    return int(reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"))


def resolve_checkpoint(path: str) -> str:
    """A checkpoint prefix from a prefix or a directory (newest checkpoint in it)."""
    if tf.io.gfile.isdir(path):
        latest = tf.train.latest_checkpoint(path) or tf.train.latest_checkpoint(
            os.path.join(path, "checkpoints"))
        if latest is None:
            raise CheckpointError(f"{path}: directory holds no TF checkpoint")
        return latest
    if not tf.io.gfile.exists(path + ".index"):
        raise CheckpointError(f"{path}: not a checkpoint (no {path}.index)")
    return path


# ---------------------------------------------------------------------------------- warm start
# Models of our training checkpoints whose backbone can warm-start another run.
_WARM_START_MODELS = ("model", "discriminator")


def _h5_file(path: str) -> Optional[str]:
    if path.endswith(".weights.h5") and tf.io.gfile.exists(path):
        return path
    if tf.io.gfile.isdir(path):
        found = sorted(glob.glob(os.path.join(path, "*.weights.h5")))
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise CheckpointError(f"{path}: several *.weights.h5 files {found}; pass one of them")
    return None


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
    h5 = _h5_file(path)
    if h5 is not None:
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
        status = tf.train.Checkpoint(weights={name: table}).read(prefix)
        try:
            status.expect_partial().assert_existing_objects_matched()
        except AssertionError as e:
            tried.append(f"{name}: {str(e)[:300]}")
            continue
        return f"backbone ({len(table)} tensors) from training checkpoint {prefix} [{name}]"
    raise CheckpointError(
        f"{prefix}: no complete Funnel backbone under any of {list(_WARM_START_MODELS)} "
        f"(a funnel-tf training checkpoint is expected here; convert other formats to "
        f"*.weights.h5 first)" + ("; partial matches: " + "; ".join(tried) if tried else ""))
