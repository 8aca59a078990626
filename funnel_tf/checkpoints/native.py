"""Our own format: a directory with `config.json` (FunnelConfig), `model.weights.h5` (Keras
`save_weights`) and `funnel_tf.json`, which names the model class, its head arguments and a manifest
of every variable (shape + CRC32), so `from_pretrained` rebuilds the right class and proves that
each value landed in the right variable (Keras' structural loader alone can skip sub-layers with
only a warning).
"""

import json
import os
import zlib
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from funnel_tf.checkpoints import files
from funnel_tf.checkpoints.assign import LoadReport, Target, assign_arrays
from funnel_tf.checkpoints.errors import CheckpointError, read_error
from funnel_tf.checkpoints.registry import WITH_NUM_LABELS, build_model, model_classes
from funnel_tf.registry import resolve_class_name
from funnel_tf.config import ConfigError, FunnelConfig

MARKER_NAME = "funnel_tf.json"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.weights.h5"
FORMAT_VERSION = 1
_BODY_ROOTS = ("embeddings/", "encoder/", "decoder/")


def is_native_dir(path: str) -> bool:
    return files.exists(os.path.join(path, MARKER_NAME))


def _body(model):
    return getattr(model, "funnel", model)


def canonical_name(model, variable) -> str:
    """A variable's path without the model's own name: `encoder/layer_0/...` for the backbone,
    `classifier/linear_out/kernel` for a head, whatever the models are named."""
    path = variable.path
    body = _body(model)
    if path.startswith(body.name + "/") and path[len(body.name) + 1:].startswith(_BODY_ROOTS):
        return path[len(body.name) + 1:]
    if path.startswith(model.name + "/"):
        return path[len(model.name) + 1:]
    return path


def named_variables(model) -> List[Tuple[str, object]]:
    out = [(canonical_name(model, v), v) for v in model.weights]
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise CheckpointError(f"{type(model).__name__} has several variables named {dup}")
    return out


def _crc(value) -> int:
    return zlib.crc32(np.ascontiguousarray(value).tobytes()) & 0xFFFFFFFF


def _model_kwargs(model) -> dict:
    """Constructor arguments besides the config (name, num_labels, ...); not Keras' trainable, nor
    a dtype policy inherited from the global one, so such a checkpoint loads under the reader's
    precision policy (a policy the model was built with, `dtype=`, is kept)."""
    kwargs = dict(model.get_config())
    drop = ("config", "trainable") if getattr(model, "dtype_given", False) else ("config", "trainable", "dtype")
    for key in drop:
        kwargs.pop(key, None)
    return kwargs


def check_save_destination(directory: str, writes: Sequence[str], overwrite: bool = False) -> None:
    """CheckpointError unless `directory` is new or empty, or `overwrite` is set; nothing is
    written. A save never silently replaces a file: not the user's own config.json beside other
    work, and not an earlier save (saving again over it needs overwrite=True as well). With
    overwrite the files named in `writes` are replaced and every other file is left as it is."""
    if files.exists(directory) and not files.isdir(directory):
        raise CheckpointError("exists and is not a directory; choose a folder to save into", source=directory)
    if overwrite or not files.isdir(directory):
        return
    entries = sorted(e.rstrip("/") for e in files.listdir(directory))
    if not entries:
        return
    ours = [e for e in entries if e in writes]
    foreign = [e for e in entries if e not in writes]
    parts = []
    if ours:
        parts.append(f"it already holds {', '.join(ours)}, which this save would replace")
    if foreign:
        parts.append(f"it holds other files ({', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''})")
    raise CheckpointError(f"refusing to save into a folder that is not empty: {'; '.join(parts)}. Save into a "
                          f"new or empty folder, or pass overwrite=True to replace {', '.join(writes)} there "
                          f"(other files are kept)", source=directory)


SAVED_FILES = (CONFIG_NAME, WEIGHTS_NAME, MARKER_NAME)


def save_pretrained(model, directory: str, overwrite: bool = False) -> Dict[str, str]:
    """Write config.json, model.weights.h5 and funnel_tf.json into `directory` (created if needed;
    any filesystem tf.io.gfile knows, e.g. gs://, when TensorFlow is installed). A folder that is not
    empty is refused unless `overwrite` (see `check_save_destination`). Same files on every backend."""
    import keras

    import funnel_tf

    check_save_destination(directory, SAVED_FILES, overwrite)
    files.makedirs(directory)
    paths = {k: os.path.join(directory, n) for k, n in
             (("config", CONFIG_NAME), ("weights", WEIGHTS_NAME), ("marker", MARKER_NAME))}
    with files.open_file(paths["config"], "w") as f:
        f.write(model.config.to_json_string())
    model.save_weights(paths["weights"], overwrite=True)
    cls = type(model)
    marker = {
        "format": "funnel_tf",
        "format_version": FORMAT_VERSION,
        "model_class": cls.__name__,
        "module": cls.__module__,
        "kwargs": _model_kwargs(model),
        "funnel_tf_version": funnel_tf.__version__,
        "keras_version": keras.__version__,
        "variables": {name: {"shape": list(v.shape), "dtype": str(v.dtype), "crc32": _crc(v.numpy())}
                      for name, v in named_variables(model)},
    }
    with files.open_file(paths["marker"], "w") as f:
        f.write(json.dumps(marker, indent=1, sort_keys=True) + "\n")
    return paths


def _read_json(path: str) -> dict:
    with files.open_file(path) as f:
        return json.loads(f.read())


def read_marker(directory: str) -> dict:
    path = os.path.join(directory, MARKER_NAME)
    if not files.exists(path):
        raise CheckpointError(f"not a funnel_tf checkpoint: no {MARKER_NAME}", source=directory)
    try:
        marker = _read_json(path)
    except ValueError as e:  # JSONDecodeError, or UnicodeDecodeError of a binary/corrupt file
        raise CheckpointError(f"invalid JSON: {str(e)[:200]}", source=path) from e
    if not isinstance(marker, dict):
        raise CheckpointError("invalid marker: not a JSON object", source=path)
    if marker.get("format") != "funnel_tf" or int(marker.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"unsupported funnel_tf checkpoint format {marker.get('format')!r} "
                              f"version {marker.get('format_version')!r}", source=path)
    return marker


def _read_config(directory: str) -> FunnelConfig:
    """The config.json that save_pretrained wrote (our own format), from any filesystem."""
    path = os.path.join(directory, CONFIG_NAME)
    if os.path.exists(path):  # local: the config reader's own checks and messages
        return FunnelConfig.from_json_file(path)
    if not files.exists(path):
        raise ConfigError(f"config file not found: {path}")
    try:
        return FunnelConfig.from_dict(_read_json(path))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: invalid JSON ({e})") from e


def _stored_class(marker: dict, source: str):
    name, module = marker.get("model_class"), marker.get("module", "")
    known = model_classes()
    if name in known and known[name].__module__ == module:
        return known[name]
    if not module.startswith("funnel_tf."):  # only ever import our own code
        raise CheckpointError(f"model class {module}.{name} is not a funnel_tf class", source=source)
    import importlib

    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise CheckpointError(f"cannot find model class {module}.{name}: {e}", source=source) from e


def load_native_weights(model, directory: str, marker: Optional[dict] = None) -> LoadReport:
    """Load `model.weights.h5` into an already built `model` of the stored class, verified by the manifest."""
    marker = marker or read_marker(directory)
    weights = os.path.join(directory, WEIGHTS_NAME)
    if not files.exists(weights):
        raise CheckpointError(f"no {WEIGHTS_NAME}", source=directory)
    manifest = marker.get("variables", {})
    variables = named_variables(model)
    have = {n: v for n, v in variables}
    missing = sorted(set(have) - set(manifest))
    unexpected = sorted(set(manifest) - set(have))
    mismatched = [(n, tuple(manifest[n]["shape"]), tuple(have[n].shape)) for n in sorted(set(have) & set(manifest))
                  if tuple(manifest[n]["shape"]) != tuple(have[n].shape)]
    if missing or unexpected or mismatched:
        raise CheckpointError(f"checkpoint does not match {type(model).__name__}", source=weights,
                              missing=missing, unexpected=unexpected, mismatched=mismatched)
    try:
        model.load_weights(weights)
    except ValueError as e:
        raise CheckpointError(f"Keras could not load the weights into {type(model).__name__}: {e}",
                              source=weights) from e
    except (OSError, KeyError, RuntimeError) as e:  # h5py: "truncated file: eof = ..." etc.
        raise read_error(weights, e, "HDF5 weights file") from e
    wrong = sorted(n for n, v in variables if _crc(v.numpy()) != manifest[n]["crc32"])
    if wrong:
        raise CheckpointError(f"{len(wrong)} variables do not hold the saved values after loading (file "
                              f"altered, or saved from a different layer structure): {wrong[:10]}",
                              source=weights)
    return LoadReport(source=weights, format="native", model_class=type(model).__name__,
                      loaded=sorted(have))


def copy_weights(source_model, target_model, allow_missing: Sequence[str] = (), source: str = "<model>") -> LoadReport:
    """Copy variables by canonical name into a model of another class (e.g. a backbone into a head model).

    The source's decoder (when the target has none) and head variables the target lacks are skipped
    and reported; target head variables the source lacks need allow_missing (["head"]).
    """
    arrays = {n: v.numpy() for n, v in named_variables(source_model)}
    targets = [Target(n, v, lambda x: x, is_head=not n.startswith(_BODY_ROOTS))
               for n, v in named_variables(target_model)]
    has_decoder = _body(target_model).decoder is not None

    def skippable(name):
        return (name.startswith("decoder/") and not has_decoder) or not name.startswith(_BODY_ROOTS)

    return assign_arrays(targets, arrays, source=source, fmt="native", model_class=type(target_model).__name__,
                         allow_missing=allow_missing, skippable=skippable)


def from_pretrained(directory: str, model_class: Optional[str] = None, allow_missing: Sequence[str] = (),
                    num_labels: Optional[int] = None, return_report: bool = False, dtype=None,
                    **config_overrides):
    """Rebuild the saved model (its class and head arguments) and load its weights.

    model_class: load into another class instead (e.g. a pretrained FunnelModel into
    "token_cls"); variables are then copied by name, see `copy_weights`. dtype: the precision
    policy to build in instead of the saved one (weights saved in another variable dtype are
    loaded and checked as saved, then copied over). config_overrides: FunnelConfig fields to
    change that do not change shapes (e.g. dropout).
    """
    marker = read_marker(directory)
    try:
        config = _read_config(directory)
        if config_overrides:
            config = config.replace(**config_overrides)
    except ConfigError as e:
        raise CheckpointError(f"cannot read the model config: {e}", source=directory) from e
    cls = _stored_class(marker, directory)
    kwargs = dict(marker.get("kwargs", {}))
    target_name = resolve_class_name(model_class) if model_class else cls.__name__
    if num_labels is not None and target_name == cls.__name__ and kwargs.get("num_labels") not in (None, num_labels):
        raise CheckpointError(f"the saved head has num_labels={kwargs.get('num_labels')}, not {num_labels}; "
                              "load the backbone (model_class='base') and train a new head", source=directory)
    saved_dtypes = {str(v.get("dtype")) for v in marker.get("variables", {}).values()}
    # Variables of the saved dtype: the values load (and are checked) straight into the policy's.
    direct = dtype is not None and saved_dtypes <= {_variable_dtype(dtype)}
    if direct:
        kwargs["dtype"] = dtype
    model = cls.from_config({"config": config.to_dict(), **kwargs})
    report = load_native_weights(model, directory, marker)
    if target_name != cls.__name__ or (dtype is not None and not direct):
        if target_name == cls.__name__:  # the same model in another variable dtype
            target = cls.from_config({"config": config.to_dict(), **kwargs, "dtype": dtype})
        else:
            target_kwargs = {}
            if target_name in WITH_NUM_LABELS:
                target_kwargs["num_labels"] = int(num_labels or kwargs.get("num_labels") or 2)
            target = build_model(target_name, config, dtype=dtype, **target_kwargs)
        report = copy_weights(model, target, allow_missing=allow_missing,
                              source=os.path.join(directory, WEIGHTS_NAME))
        model = target
    return (model, report) if return_report else model


def _variable_dtype(dtype) -> str:
    """The variable dtype of a precision policy (float32 for mixed_bfloat16)."""
    import keras

    return keras.dtype_policies.get(dtype).variable_dtype
