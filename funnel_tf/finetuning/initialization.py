"""Where a finetuning model comes from: `--init_checkpoint` resolved once (`checkpoints.resolve`),
its config (--config or the checkpoint's own), its vocab, and loading it into the built model (any
kind: ours, HuggingFace, the original release, a run, a TF training checkpoint or weights file)."""

from __future__ import annotations

import json
import os
from typing import Optional, Union

import tensorflow as tf

from funnel_tf import storage

from funnel_tf.config import FunnelConfig, load_config
from funnel_tf.tasks.base import Task, TaskError
from funnel_tf.errors import UserError
from funnel_tf.checkpoints import resolve as resolve_checkpoint
from funnel_tf.checkpoints.init_checkpoint import load_init_checkpoint
from funnel_tf.checkpoints.pretraining_run import RUN_ARGS
from funnel_tf.checkpoints.resolver import VOCAB_NAMES, Resolved, next_to


def resolve_init(path: Optional[str], flag: str = "--init_checkpoint") -> Optional[Resolved]:
    """`path` resolved (once per run; None when not given); a TaskError naming the flag otherwise."""
    if not path:
        return None
    try:
        return resolve_checkpoint(path)
    except UserError as e:
        raise TaskError(f"{flag} {e}") from None


def find_vocab(init: Union[Resolved, str, None]) -> Optional[str]:
    """A vocab file next to a checkpoint (vocab.txt / vocab.uncased.txt in its folder, best/ or
    parent; `init` resolved, or a folder that may hold one), else the vocab a pretraining run's
    pretrain_args.json names (runs from before pretraining copied its vocab into model_dir), or None."""
    if not init:
        return None
    if isinstance(init, Resolved):
        return init.vocab or (_pretraining_vocab(init.pretrain_args) if init.pretrain_args else None)
    args_path = next_to(init, [RUN_ARGS])
    return next_to(init, VOCAB_NAMES) or (_pretraining_vocab(args_path) if args_path else None)


def _pretraining_vocab(args_path: str) -> Optional[str]:
    """The vocab of the pretraining run whose pretrain_args.json is `args_path`: its --vocab, the
    demo vocab for the demo, or the vocab_path in its records' manifest.json. TaskError when the
    file it names is gone."""
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


def resolve_config(config: Optional[str], init: Optional[Resolved]) -> FunnelConfig:
    """--config (a configs/ name or a path) wins; otherwise the init checkpoint's own config
    (our format, HuggingFace, the original release, or a `config.json` next to a TF checkpoint)."""
    if config:
        return load_config(config)
    if not init:
        raise TaskError("give --config (e.g. --config=tiny) or an --init_checkpoint that carries "
                        "its config")
    try:
        return init.read_config()
    except UserError as e:
        raise TaskError(f"--init_checkpoint {e}") from None


def initialize_model(model, task: Task, init: Union[Resolved, str]) -> str:
    """Load `init` into `model` (already built in the strategy scope); returns a description.

    The same route as `pretrain.py --init_checkpoint` (`checkpoints.init_checkpoint`): a finetuning
    model_dir (its best/ model) or any funnel_tf / HuggingFace / original checkpoint folder is
    copied by name into `model` (a decoder the task does not use and heads it lacks are skipped;
    head variables the checkpoint lacks keep their fresh initialisation); a TF training
    checkpoint (e.g. a pretrain.py model_dir) or a *.weights.h5 file gives the backbone.
    Any shape or name mismatch raises TaskError naming the tensors (nothing is half-loaded).
    """
    try:
        return load_init_checkpoint(model.funnel, init, {"model": model})
    except UserError as e:  # already says what and where
        raise TaskError(f"--init_checkpoint {e}") from None
    except (ValueError, tf.errors.OpError) as e:
        path = init.path if isinstance(init, Resolved) else init
        raise TaskError(f"--init_checkpoint {path} cannot initialise the {task.name} model "
                        f"(wrong config, e.g. different sizes, or not a Funnel checkpoint):\n"
                        f"{str(e)[:2000]}") from None
