"""The pretraining tasks by their `--objective` name: masked LM and ELECTRA."""

from __future__ import annotations

from funnel_tf.config import FunnelConfig
from funnel_tf.tasks.base import Task
from funnel_tf.tasks.electra import ElectraTask
from funnel_tf.tasks.mlm import MaskedLMTask

PRETRAINING_TASKS = {"mlm": MaskedLMTask, "electra": ElectraTask}


def pretraining_task(name: str, config: FunnelConfig, **kwargs) -> Task:
    """A fresh pretraining Task for `config` (kwargs: ELECTRA's disc_weight, generator_width)."""
    if name not in PRETRAINING_TASKS:
        raise ValueError(f"unknown objective {name!r}; choose one of {sorted(PRETRAINING_TASKS)}")
    return PRETRAINING_TASKS[name](config, **kwargs)
