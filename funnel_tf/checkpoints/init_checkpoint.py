"""The one route by which a fresh run loads `--init_checkpoint`, for pretraining and finetuning alike.

Accepted, whatever the run: a finetuning model_dir (its best/ model), a TF training checkpoint
written by our runs (directory or prefix; the backbone by variable path), a Keras `*.weights.h5`
file, or a checkpoint folder in any format `funnel_tf.checkpoints` reads (ours, a HuggingFace
folder, the original release). Folders are built by `checkpoints.load_model` and copied by name
into the run's head model: its backbone (and decoder, when both have one) always, head variables
where the checkpoint has them; head variables it lacks keep their fresh initialisation.
Everything raises `CheckpointError` (a UserError) naming the tensors, before any is assigned.
"""

from __future__ import annotations

import os
from typing import Mapping, Optional

import keras
import tensorflow as tf

from funnel_tf.engine import checkpointing
from funnel_tf.engine.checkpointing import CheckpointError

BEST_DIR = "best"  # a finetuning run's best model, under its model_dir


def has_best(model_dir: str) -> bool:
    """True when `model_dir` holds a finetuning run's best/ model (its marker file: exact on every
    filesystem, unlike a folder check on ram://, which also matches best_result.json)."""
    from funnel_tf.checkpoints.native import is_native_dir

    return is_native_dir(os.path.join(model_dir, BEST_DIR))


def is_training_checkpoint(path: str) -> bool:
    """True for a TF2 object checkpoint (a prefix, its directory, or a run's model_dir with
    checkpoints/), as our pretraining and finetuning runs write; False for everything else
    (including the original release's TF1 checkpoints, whose names have no `.ATTRIBUTES`)."""
    try:
        prefix = checkpointing.resolve_checkpoint(path)
        keys = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    except (CheckpointError, tf.errors.OpError, ValueError):
        return False
    return any("/.ATTRIBUTES/" in k for k in keys)


def detect_format(path: str) -> str:
    """The checkpoint format of a folder; our own format is recognised on any filesystem (a
    finetuning run's best/ on gs://), the others by `checkpoints.detect_format`."""
    from funnel_tf import checkpoints
    from funnel_tf.checkpoints import native

    if native.is_native_dir(path):
        return "native"
    return checkpoints.detect_format(path)


def kind_of(path: str) -> str:
    """How `path` will be loaded: "training" (a TF training checkpoint), "h5" (a Keras weights
    file) or a `funnel_tf.checkpoints` format ("native", "hf", "original"); after a finetuning
    model_dir was replaced by its best/ (see `resolve`). CheckpointError when it is none of them."""
    from funnel_tf import checkpoints

    if not (tf.io.gfile.exists(path) or tf.io.gfile.exists(path + ".index")):
        raise CheckpointError(f"{path}: not found")
    if is_training_checkpoint(path):
        return "training"
    if path.endswith(".h5"):
        return "h5"
    try:
        return detect_format(path)
    except checkpoints.CheckpointError as e:
        if tf.io.gfile.isdir(path) and checkpointing.weights_file(path):
            return "h5"  # a folder holding one *.weights.h5 and nothing else we know
        formats = str(e).split("expected ", 1)[-1].strip().rstrip(".")
        raise CheckpointError(
            f"{path}: not a checkpoint this project reads; expected a funnel-tf training "
            f"checkpoint or run folder, a *.weights.h5 file, {formats}") from None


def resolve(path: str) -> str:
    """A finetuning model_dir stands for its best/ model; anything else for itself."""
    return os.path.join(path, BEST_DIR) if tf.io.gfile.isdir(path) and has_best(path) else path


def owner_of(backbone: keras.Model, models: Optional[Mapping[str, keras.Model]]) -> keras.Model:
    """The model among `models` whose backbone is `backbone` (the one a checkpoint's head fits),
    else the backbone itself."""
    for model in (models or {}).values():
        if getattr(model, "funnel", None) is backbone:
            return model
    return backbone


def load_init_checkpoint(backbone: keras.Model, path: str,
                         models: Optional[Mapping[str, keras.Model]] = None) -> str:
    """Initialise a freshly built run from `path`; returns a one-line description of what loaded.

    backbone: the run's FunnelModel / FunnelBaseModel; models: the run's named models (a
    pretraining objective's, or {"model": task_model} when finetuning), among which the owner of
    `backbone` receives the checkpoint's head where it has one.
    """
    from funnel_tf import checkpoints
    from funnel_tf.checkpoints.native import copy_weights

    path = resolve(path)
    kind = kind_of(path)
    if kind in ("training", "h5"):
        return checkpointing.warm_start(backbone, path, models)
    target = owner_of(backbone, models)
    try:
        source = checkpoints.load_model(path, format=kind)
        report = copy_weights(source, target, allow_missing=[checkpoints.HEAD], source=path)
    except (checkpoints.CheckpointError, ValueError) as e:
        raise CheckpointError(f"{path} ({kind} checkpoint) does not fit the "
                              f"{type(target).__name__} built from this config:\n{e}") from None
    del source
    return f"{kind} checkpoint {path}: " + report.summary()


# ------------------------------------------------------------------- a pretraining run as a model
RUN_CONFIG = "config.json"           # what pretraining_run writes into its model_dir
RUN_ARGS = "pretrain_args.json"
CHECKPOINTS_DIR = "checkpoints"


def pretraining_run_of(path: str) -> Optional[str]:
    """The model_dir of a pretraining run when `path` is one (config.json + pretrain_args.json),
    its checkpoints/ folder or a ckpt-N prefix in there; None for anything else."""
    def is_run(folder):
        return all(tf.io.gfile.exists(os.path.join(folder, n)) for n in (RUN_CONFIG, RUN_ARGS))

    path = path.rstrip("/")
    if tf.io.gfile.isdir(path):
        if is_run(path):
            return path
        parent = os.path.dirname(path)
        return parent if os.path.basename(path) == CHECKPOINTS_DIR and is_run(parent) else None
    if tf.io.gfile.exists(path + ".index"):
        folder = os.path.dirname(path)
        parent = os.path.dirname(folder)
        return parent if os.path.basename(folder) == CHECKPOINTS_DIR and is_run(parent) else None
    return None


def load_pretraining_run(path: str, model_class=None, allow_missing=(), num_labels: Optional[int] = None,
                         return_report: bool = False, **config_overrides):
    """A model from a pretraining run (`path`: its model_dir or checkpoints/ folder, whose newest
    readable checkpoint is used, or one ckpt-N prefix), as `funnel_tf.load_model` returns it.

    The run's own models are rebuilt from its config.json and objective (pretrain_args.json) and
    restored from the checkpoint by the tables the run saved (`checkpointing.model_weights`, as
    --init_checkpoint reads them), every weight or a CheckpointError; the discriminator of an
    ELECTRA run or the MLM model is then copied by name into `model_class` (default: that model's
    class; "base", "seq_cls", ... take its backbone, head tensors they lack need allow_missing)."""
    import json

    from funnel_tf import checkpoints
    from funnel_tf.checkpoints.native import copy_weights
    from funnel_tf.checkpoints.registry import WITH_NUM_LABELS, build_model
    from funnel_tf.registry import resolve_class_name
    from funnel_tf.config import ConfigError, FunnelConfig
    from funnel_tf.tasks.pretraining import pretraining_task

    run = pretraining_run_of(path)
    if run is None:
        raise checkpoints.CheckpointError(f"not a pretraining run (a model_dir with {RUN_CONFIG}, {RUN_ARGS} "
                                          f"and {CHECKPOINTS_DIR}/ckpt-N)", source=path)
    try:
        prefix = checkpointing.resolve_checkpoint(path)  # a folder: its newest readable checkpoint
    except CheckpointError as e:
        raise checkpoints.CheckpointError(f"a pretraining run without a usable checkpoint: {e} (a run "
                                          f"saves one every --save_every steps)", source=path) from None
    try:
        config = FunnelConfig.from_json_file(os.path.join(run, RUN_CONFIG))
        if config_overrides:
            config = config.replace(**config_overrides)
        with tf.io.gfile.GFile(os.path.join(run, RUN_ARGS)) as f:
            args = json.loads(f.read())
    except (ConfigError, ValueError) as e:
        raise checkpoints.CheckpointError(f"cannot read the run's settings: {e}", source=run) from None
    objective = args.get("objective") or "mlm"
    kwargs = {"generator_width": float(args.get("generator_width", 0.25))} if objective == "electra" else {}
    probe = pretraining_task(objective, config, **kwargs)
    with tf.device("/cpu:0"):
        probe.build()
    for name, model in probe.models.items():
        table = checkpointing.model_weights(model)
        try:
            status = tf.train.Checkpoint(weights={name: table}).read(prefix)
            status.expect_partial().assert_existing_objects_matched()
        except (AssertionError, ValueError) as e:
            raise checkpoints.CheckpointError(
                f"does not hold the {objective} run's {name} of its config.json ({str(e).splitlines()[0][:300]})",
                source=prefix) from None
        except (tf.errors.OpError, IndexError) as e:
            raise checkpoints.CheckpointError(f"cannot read this checkpoint ({str(e).splitlines()[0][:200]})",
                                              source=prefix) from None
    source = probe.models.get("discriminator") or probe.models["model"]
    target_name = resolve_class_name(model_class) if model_class else type(source).__name__
    target_kwargs = {"num_labels": int(num_labels or 2)} if target_name in WITH_NUM_LABELS else {}
    if num_labels is not None and not target_kwargs:
        raise checkpoints.CheckpointError(f"num_labels only applies to {list(WITH_NUM_LABELS)}", source=path)
    target = build_model(target_name, config, **target_kwargs)
    report = copy_weights(source, target, allow_missing=allow_missing, source=prefix)
    report.format = "pretraining run"
    del probe
    return (target, report) if return_report else target


__all__ = ["BEST_DIR", "has_best", "is_training_checkpoint", "detect_format", "kind_of", "resolve",
           "owner_of", "load_init_checkpoint", "pretraining_run_of", "load_pretraining_run"]
