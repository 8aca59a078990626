"""Where a finetuning model comes from: `--init_checkpoint` resolved once (`checkpoints.resolve`),
its config (--config or the checkpoint's own), its vocab, and loading it into the built model (any
kind: ours, HuggingFace, the original release, a run, a TF training checkpoint or weights file)."""

from __future__ import annotations

from typing import Optional, Union

import tensorflow as tf

from funnel_tf.config import FunnelConfig, load_config
from funnel_tf.tasks.base import Task, TaskError
from funnel_tf.errors import UserError
from funnel_tf.checkpoints import resolve as resolve_checkpoint
from funnel_tf.checkpoints.init_checkpoint import load_init_checkpoint
from funnel_tf.checkpoints.resolver import Resolved
from funnel_tf.checkpoints.resolver import find_vocab as checkpoint_vocab


def resolve_init(path: Optional[str], flag: str = "--init_checkpoint") -> Optional[Resolved]:
    """`path` resolved (once per run; None when not given); a TaskError naming the flag otherwise."""
    if not path:
        return None
    try:
        return resolve_checkpoint(path)
    except UserError as e:
        raise TaskError(f"{flag} {e}") from None


def find_vocab(init: Union[Resolved, str, None]) -> Optional[str]:
    """The vocab of `init` (resolved, or a folder that may hold one) as `checkpoints.find_vocab`
    finds it (beside the checkpoint, or named by its pretraining run), or None; a TaskError when
    the vocab a run names is gone."""
    if not init:
        return None
    try:
        return checkpoint_vocab(init)
    except UserError as e:
        raise TaskError(f"{e}; pass --vocab_file") from None


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
