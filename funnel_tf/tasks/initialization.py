"""Where a finetuning model comes from: its config (--config or the init checkpoint's own), the
vocab next to a checkpoint, and loading any checkpoint kind into the built model (ours, HuggingFace,
the original release, or a TF training checkpoint such as a pretrain.py model_dir)."""

from __future__ import annotations

import json
import os
from typing import Optional

import tensorflow as tf

from funnel_tf import storage

from funnel_tf.config import FunnelConfig, load_config
from funnel_tf.tasks.base import Task, TaskError
from funnel_tf.training import checkpointing

BEST_DIR = "best"  # a finetuning run's best model, under its model_dir
VOCAB_NAMES = ("vocab.txt", "vocab.uncased.txt")


def _next_to(path: str, names) -> Optional[str]:
    """The first of `names` in the checkpoint's folder, its best/ or its parent folder, or None."""
    base = path if tf.io.gfile.isdir(path) else os.path.dirname(path)
    for folder in (base, os.path.join(base, BEST_DIR), os.path.dirname(base.rstrip("/"))):
        for name in names:
            candidate = os.path.join(folder, name)
            if tf.io.gfile.exists(candidate):
                return candidate
    return None


def has_best(model_dir: str) -> bool:
    """True when `model_dir` holds a finetuning run's best/ model (its marker file: exact on every
    filesystem, unlike a folder check on ram://, which also matches best_result.json)."""
    from funnel_tf.checkpoints.native import is_native_dir

    return is_native_dir(os.path.join(model_dir, BEST_DIR))


def find_vocab(init_checkpoint: Optional[str]) -> Optional[str]:
    """A vocab file next to a checkpoint (vocab.txt / vocab.uncased.txt), or None."""
    return _next_to(init_checkpoint, VOCAB_NAMES) if init_checkpoint else None


def resolve_config(config: Optional[str], init_checkpoint: Optional[str]) -> FunnelConfig:
    """--config (a configs/ name or a path) wins; otherwise the init checkpoint's own config
    (our format, HuggingFace, the original release, or a `config.json` next to a TF checkpoint)."""
    if config:
        return load_config(config)
    if not init_checkpoint:
        raise TaskError("give --config (e.g. --config=tiny) or an --init_checkpoint that carries "
                        "its config")
    from funnel_tf import checkpoints

    path = init_checkpoint
    fmt = None
    if not _is_training_checkpoint(path):
        try:
            fmt = _detect_format(path)
        except checkpoints.CheckpointError:
            fmt = None
    if fmt == "hf":
        from funnel_tf.checkpoints.hf import read_hf_config

        return read_hf_config(path)[1]
    if fmt == "original":
        from funnel_tf.checkpoints.original import NET_CONFIG_NAME, read_original_config

        folder = path if tf.io.gfile.isdir(path) else os.path.dirname(path)
        return read_original_config(os.path.join(folder, NET_CONFIG_NAME))
    candidate = _next_to(path, ["config.json"])
    if candidate:
        return read_config_file(candidate)
    raise TaskError(f"{init_checkpoint}: no config found next to the checkpoint; pass --config")


def initialize_model(model, task: Task, path: str) -> str:
    """Load `path` into `model` (already built in the strategy scope); returns a description.

    - one of our finetuning model_dirs (its best/ model) or any funnel_tf / HuggingFace / original
      checkpoint directory: built by `funnel_tf.checkpoints.load_model`, then copied by name into
      `model` (a decoder the task does not use and heads it lacks are skipped; head variables
      the checkpoint lacks keep their fresh initialisation);
    - a TF training checkpoint (e.g. a pretrain.py model_dir): its backbone, via the engine's
      `warm_start`.
    Any shape or name mismatch raises TaskError naming the tensors (nothing is half-loaded: the
    copy validates every tensor before assigning any).
    """
    from funnel_tf import checkpoints
    from funnel_tf.checkpoints.native import copy_weights

    if has_best(path):
        path = os.path.join(path, BEST_DIR)
    fmt = None
    if not _is_training_checkpoint(path):
        try:
            fmt = _detect_format(path)
        except checkpoints.CheckpointError as e:
            raise TaskError(f"--init_checkpoint: {e}") from None
    if fmt is not None:
        try:
            source = checkpoints.load_model(path, format=fmt)
            report = copy_weights(source, model, allow_missing=[checkpoints.HEAD], source=path)
        except (checkpoints.CheckpointError, ValueError) as e:
            raise TaskError(f"--init_checkpoint {path} does not fit the {task.name} model built "
                            f"from this config:\n{e}") from None
        del source
        return f"{fmt} checkpoint {path}: " + report.summary()
    try:
        return checkpointing.warm_start(task.backbone(model), path)
    except (checkpointing.CheckpointError, ValueError, tf.errors.OpError) as e:
        raise TaskError(f"--init_checkpoint {path} cannot initialise the {task.name} model (wrong "
                        f"config, e.g. different sizes, or not a Funnel checkpoint):\n"
                        f"{str(e)[:2000]}") from None


def _detect_format(path: str) -> str:
    """The checkpoint format of `path`; our own format is recognised on any filesystem (a
    finetuning run's best/ on gs://), the others by `checkpoints.detect_format`."""
    from funnel_tf import checkpoints
    from funnel_tf.checkpoints import native

    if native.is_native_dir(path):
        return "native"
    return checkpoints.detect_format(path)


def read_config_file(path: str) -> FunnelConfig:
    """`FunnelConfig.from_json_file` for local paths; other filesystems (gs://) are read through
    tf.io.gfile and parsed by the same rules (original net_config, HF config, or ours)."""
    if storage.is_local(path):
        return FunnelConfig.from_json_file(path)
    try:
        with tf.io.gfile.GFile(path) as f:
            d = json.loads(f.read())
    except (json.JSONDecodeError, tf.errors.OpError) as e:
        raise TaskError(f"cannot read the model config {path}: {str(e).splitlines()[0]}") from None
    if "block_size" in d:
        return FunnelConfig.from_original_dict(d)
    if "transformers_version" in d or "architectures" in d:
        return FunnelConfig.from_hf_dict(d)
    return FunnelConfig.from_dict(d)


def _is_training_checkpoint(path: str) -> bool:
    """True for a TF2 object checkpoint (a prefix, its directory, or a run's model_dir with
    checkpoints/), as our pretraining and finetuning runs write; False for everything else
    (including the original release's TF1 checkpoints, whose names have no `.ATTRIBUTES`)."""
    try:
        prefix = checkpointing.resolve_checkpoint(path)
        keys = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    except (checkpointing.CheckpointError, tf.errors.OpError, ValueError):
        return False
    return any("/.ATTRIBUTES/" in k for k in keys)
