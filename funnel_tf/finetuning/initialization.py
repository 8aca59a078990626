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
from funnel_tf.errors import UserError
from funnel_tf.checkpoints import init_checkpoint as init_route
from funnel_tf.checkpoints.init_checkpoint import BEST_DIR, has_best  # noqa: F401 (re-exported)

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




PRETRAIN_ARGS = "pretrain_args.json"  # training/pretraining_run.ARGS_FILE


def find_vocab(init_checkpoint: Optional[str]) -> Optional[str]:
    """A vocab file next to a checkpoint (vocab.txt / vocab.uncased.txt), else the vocab a
    pretraining run folder's pretrain_args.json names (runs from before pretraining copied its
    vocab into model_dir), or None."""
    if not init_checkpoint:
        return None
    return _next_to(init_checkpoint, VOCAB_NAMES) or _pretraining_vocab(init_checkpoint)


def _pretraining_vocab(init_checkpoint: str) -> Optional[str]:
    """The vocab of the pretraining run beside `init_checkpoint`: its --vocab, the demo vocab
    for the demo, or the vocab_path in its records' manifest.json. TaskError when the file it
    names is gone."""
    args_path = _next_to(init_checkpoint, [PRETRAIN_ARGS])
    if not args_path:
        return None
    try:
        with tf.io.gfile.GFile(args_path) as f:
            saved = json.load(f)
    except (ValueError, tf.errors.OpError):
        return None
    vocab = saved.get("vocab") if isinstance(saved, dict) else None
    if not vocab and isinstance(saved, dict):
        from funnel_tf import resources
        from funnel_tf.pretraining import inputs

        if not saved.get("train_data"):
            vocab = resources.demo_vocab_path()
        else:
            try:
                vocab = (inputs.read_manifest(inputs.expand(saved["train_data"])) or {}).get(
                    "vocab_path")
            except UserError:
                vocab = None
    if not vocab:
        return None
    if not tf.io.gfile.exists(vocab) and storage.is_local(vocab) and not os.path.isabs(vocab):
        beside = os.path.join(os.path.dirname(args_path), vocab)
        vocab = beside if tf.io.gfile.exists(beside) else vocab
    if not tf.io.gfile.exists(vocab):
        raise TaskError(f"{args_path} names the vocab {vocab}, which is not found; pass "
                        f"--vocab_file")
    return vocab


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
    if not init_route.is_training_checkpoint(path):
        try:
            fmt = init_route.detect_format(path)
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

    The same route as `pretrain.py --init_checkpoint` (`training.init_checkpoint`): a finetuning
    model_dir (its best/ model) or any funnel_tf / HuggingFace / original checkpoint folder is
    copied by name into `model` (a decoder the task does not use and heads it lacks are skipped;
    head variables the checkpoint lacks keep their fresh initialisation); a TF training
    checkpoint (e.g. a pretrain.py model_dir) or a *.weights.h5 file gives the backbone.
    Any shape or name mismatch raises TaskError naming the tensors (nothing is half-loaded).
    """
    try:
        return init_route.load_init_checkpoint(model.funnel, path, {"model": model})
    except UserError as e:  # already says what and where
        raise TaskError(f"--init_checkpoint {e}") from None
    except (ValueError, tf.errors.OpError) as e:
        raise TaskError(f"--init_checkpoint {path} cannot initialise the {task.name} model "
                        f"(wrong config, e.g. different sizes, or not a Funnel checkpoint):\n"
                        f"{str(e)[:2000]}") from None


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
