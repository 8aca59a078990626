"""Our TF2 training checkpoints (what pretraining and finetuning runs write) as a source of weights:
the `{"weights": {model: {variable path: variable}}}` tables they store, finding a readable
checkpoint, warm-starting a backbone from one (or from a Keras `*.weights.h5` file), and comparing
shapes without restoring, so a checkpoint of another size is named tensor by tensor.

TensorFlow is imported where a TF checkpoint is read: finding a `*.weights.h5` file and telling
that a path holds no TF checkpoint work without it (the JAX backend).
"""

from __future__ import annotations

import collections
import os
import warnings
from typing import Dict, List, Mapping, Optional, Tuple

import keras
from absl import logging

from funnel_tf.checkpoints import files
from funnel_tf.checkpoints.errors import CheckpointError, CheckpointReadError, read_error

def _tf(source: str):
    return files.tensorflow("reading a TF checkpoint (a training checkpoint, a pretraining run or the "
                            "original TF1 release)", source=source)


def model_weights(model: keras.Model) -> Dict[str, "tf.Variable"]:
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


def resolve_checkpoint(path: str) -> str:
    """A checkpoint prefix from a prefix or a directory (its newest readable checkpoint, also
    under `<path>/checkpoints`); CheckpointError when there is none or none is readable."""
    tf = _tf(path)
    from funnel_tf.checkpoints import tf_files

    if tf.io.gfile.isdir(path):
        for directory in (path, os.path.join(path, "checkpoints")):
            candidates = [p for p in tf_files.find_checkpoints(directory)] or \
                tf_files.find_checkpoints(directory, "model.ckpt")
            if not candidates:
                latest = tf.train.latest_checkpoint(directory)
                candidates = [latest] if latest else []
            if not candidates:
                continue
            reasons = []
            for prefix in candidates:
                reason = tf_files.unreadable_reason(prefix)
                if reason is None:
                    if reasons:
                        logging.warning("using %s; skipped unreadable: %s", prefix,
                                        "; ".join(reasons))
                    return prefix
                reasons.append(f"{os.path.basename(prefix)}: {reason}")
            raise CheckpointReadError(
                f"{directory}: no readable checkpoint: {'; '.join(reasons)}")
        raise CheckpointError(f"{path}: directory holds no TF checkpoint")
    if not tf.io.gfile.exists(path + ".index"):
        raise CheckpointError(f"{path}: not a checkpoint (no {path}.index)")
    reason = tf_files.unreadable_reason(path)
    if reason is not None:
        raise CheckpointReadError(f"{path}: checkpoint cannot be read: {reason}")
    return path




def is_training_checkpoint(path: str) -> bool:
    """True for a TF2 object checkpoint (a prefix, its directory, or a run's model_dir with
    checkpoints/), as our pretraining and finetuning runs write; False for everything else
    (including the original release's TF1 checkpoints, whose names have no `.ATTRIBUTES`)."""
    if not has_tf_checkpoint_files(path):
        return False
    tf = _tf(path)
    try:
        prefix = resolve_checkpoint(path)
        keys = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    except (CheckpointError, tf.errors.OpError, ValueError):
        return False
    return any("/.ATTRIBUTES/" in k for k in keys)


def has_tf_checkpoint_files(path: str) -> bool:
    """True when `path` is a TF checkpoint prefix, or a folder (or its checkpoints/) holding one or a
    `checkpoint` state file; no TensorFlow needed. Which program wrote it is not decided here."""
    if files.exists(path + ".index"):
        return True
    if not files.isdir(path):
        return False
    return any(files.exists(os.path.join(folder, "checkpoint")) or files.glob(os.path.join(folder, "*.index"))
               for folder in (path, os.path.join(path, "checkpoints")))


# ---------------------------------------------------------------------------------- warm start
# Models of our training checkpoints whose backbone can warm-start another run.
_WARM_START_MODELS = ("model", "discriminator")


def weights_file(path: str) -> Optional[str]:
    """The Keras weights file `path` names: itself (an existing `*.weights.h5`) or the one
    `*.weights.h5` in a folder (as `save_pretrained` writes); None when there is none.
    CheckpointError when a folder holds several, since picking one would be a guess."""
    if path.endswith(".weights.h5") and files.exists(path):
        return path
    if files.isdir(path):
        found = sorted(files.glob(os.path.join(path, "*.weights.h5")))
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise CheckpointError(f"{path}: several *.weights.h5 files {found}; pass one of them")
    return None


def _check_h5_opens(path: str) -> None:
    """CheckpointReadError (one line, the file named) if h5py cannot open `path`: a truncated
    download is caught here, before it looks like a model mismatch."""
    import h5py

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
    tf = _tf(path)
    from funnel_tf.checkpoints import tf_files

    tried = []
    # No pre-filter on the stored key names: the `weights/<model>/...` table entries are only edges
    # of the object graph, and a variable is stored once, often under the optimizer's path (every
    # checkpoint pretrain.py writes). The restore itself decides what matched.
    for name in _WARM_START_MODELS:
        table = model_weights(backbone)
        try:
            status = tf.train.Checkpoint(weights={name: table}).read(prefix)
        except (tf.errors.OpError, IndexError) as e:
            raise CheckpointReadError(
                f"{prefix}: checkpoint is truncated or unreadable "
                f"({tf_files.first_line(e)})") from e
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


# ------------------------------------------------------------------ shapes, compared without loading
def _object_graph(reader) -> "object":
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    return graph


def _child(graph, node_id: Optional[int], name: str) -> Optional[int]:
    if node_id is None:
        return None
    for c in graph.nodes[node_id].children:
        if c.local_name == name:
            return c.node_id
    return None


def compare_backbone(prefix: str, backbone) -> Tuple[str, List[str], List[str], int]:
    """(model name, missing, mismatched, n) of the best-matching backbone table in a funnel-tf
    training checkpoint, comparing shapes only (nothing is restored, nothing is logged)."""
    tf = _tf(prefix)
    try:
        reader = tf.train.load_checkpoint(prefix)
        graph = _object_graph(reader)
    except (tf.errors.OpError, ValueError) as e:
        raise CheckpointError(
            f"--init_checkpoint {prefix}: unreadable checkpoint "
            f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    shapes = reader.get_variable_to_shape_map()
    table = model_weights(backbone)
    weights = _child(graph, 0, "weights")
    best = None
    for name in ("model", "discriminator"):
        node = _child(graph, weights, name)
        if node is None:
            continue
        missing, mismatched = [], []
        for key, var in table.items():
            n = _child(graph, node, key)
            ckey = None if n is None else next(
                (a.checkpoint_key for a in graph.nodes[n].attributes
                 if a.name == "VARIABLE_VALUE"), None)
            if ckey is None or ckey not in shapes:
                missing.append(key)
            elif list(shapes[ckey]) != list(var.shape):
                mismatched.append(f"{key} {list(shapes[ckey])} vs {list(var.shape)}")
        if best is None or len(missing) + len(mismatched) < len(best[1]) + len(best[2]):
            best = (name, missing, mismatched, len(table))
    if best is None:
        raise CheckpointError(
            f"--init_checkpoint {prefix}: not a funnel-tf training checkpoint (no weights/model "
            f"or weights/discriminator table): a TF checkpoint of another program")
    return best


def h5_shape_mismatch(h5_path: str, candidates) -> Optional[str]:
    """Compare the tensor shapes stored in a Keras weights file with each candidate model's and
    describe the closest: '24 of 163 tensors differ (file: [64, 64] x12, ...; model: ...)'."""
    try:
        import h5py

        shapes: collections.Counter = collections.Counter()
        with h5py.File(h5_path, "r") as f:
            f.visititems(lambda _, obj: shapes.update([tuple(obj.shape)])
                         if isinstance(obj, h5py.Dataset) else None)
    except (ImportError, OSError, ValueError):
        return None
    best = None
    for model in candidates:
        want = collections.Counter(tuple(v.shape) for v in model.weights)
        only_file, only_model = shapes - want, want - shapes
        n = sum(only_model.values())
        if best is None or n < best[0]:
            best = (n, sum(want.values()), only_file, only_model)
    if best is None or best[0] == 0:
        return None

    def fmt(counter):
        items = sorted(counter.items(), key=lambda kv: -kv[1])
        return ", ".join(f"{list(k)} x{v}" for k, v in items[:3]) + (", ..." if len(items) > 3 else "")

    n, total, only_file, only_model = best
    return (f"{n} of the model's {total} tensors have no same-shaped tensor in the file (file "
            f"has {fmt(only_file) or 'none left'}; model needs {fmt(only_model)})")
