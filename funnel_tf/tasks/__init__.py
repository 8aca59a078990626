"""Task registry: `--task` name -> a Task object (see base.py for the interface).

Names: every GLUE task (cola, sst-2, mrpc, sts-b, qqp, mnli, qnli, rte, wnli, ax; aliases such as
sst2, stsb, mnli-m accepted), the text-classification benchmarks (imdb, ag_news, dbpedia, yelp2,
yelp5, amazon2, amazon5), `csv` (any labelled CSV/TSV, columns given by options), squad_v1.1,
squad_v2.0 and race. Each name is registered once in `TASKS` (a `funnel_tf.registry.Registry`) with
a factory `(files, csv_options) -> Task`; GLUE and text-classification names and aliases come from
their dataset registries (text/glue.py, text/benchmarks.py).
"""

from __future__ import annotations

import functools
from typing import Dict, Mapping, Optional

from funnel_tf.registry import Registry
from funnel_tf.tasks.base import EvalData, Task, TaskError


def _unknown_task(name, registry: Registry) -> str:
    return (f"unknown task {name!r}; choose one of {list(registry.names())} "
            f"(GLUE aliases like sst2/stsb/mnli-m also work)")


def _csv_task(files, csv_options) -> Task:
    from funnel_tf.tasks.classification import CsvClassificationTask

    options = dict(csv_options or {})
    if not files:
        raise TaskError("task csv needs its files (--train_file, --dev_file, --test_file)")
    if options.get("text_a_column") is None:
        raise TaskError("task csv needs --text_a_column (index or header name)")
    if options.get("label_column") is None:
        raise TaskError("task csv needs --label_column (index or header name)")
    return CsvClassificationTask(files, **options)


@functools.lru_cache(maxsize=None)
def _registry() -> Registry:
    """Built on first use: the task modules import TensorFlow and the dataset registries."""
    from funnel_tf.tasks import classification, race, squad
    from funnel_tf.text.benchmarks import TEXT_CLS_TASKS
    from funnel_tf.text.glue import GLUE_TASKS

    tasks = Registry("task", normalize=lambda name: str(name).strip().lower(), error=TaskError,
                     message=_unknown_task)
    for name in GLUE_TASKS:
        tasks.register(name, *GLUE_TASKS.aliases_of(name),
                       value=lambda files, options, name=name: classification.GlueTask(name))
    for name in TEXT_CLS_TASKS:
        tasks.register(name, *TEXT_CLS_TASKS.aliases_of(name),
                       value=lambda files, options, name=name: classification.TextClassificationTask(name))
    tasks.register("csv", value=_csv_task)
    tasks.register("squad_v1.1", "squad1.1", "squad_v1", "squad",
                   value=lambda files, options: squad.SquadTask("1.1"))
    tasks.register("squad_v2.0", "squad2.0", "squad_v2", "squad2",
                   value=lambda files, options: squad.SquadTask("2.0"))
    tasks.register("race", value=lambda files, options: race.RaceTask())
    return tasks


def task_names():
    """Canonical task names accepted by `get_task` (aliases not listed)."""
    return list(_registry().names())


def get_task(name: str, files: Optional[Mapping[str, str]] = None,
             csv_options: Optional[Dict] = None) -> Task:
    """A fresh Task for `name` (case-insensitive). `files` overrides per-split paths
    ({"train": ..., "dev": ..., "test": ...}); `csv_options` configures the `csv` task
    (text_a_column, label_column, text_b_column, label_names, regression, has_header, delimiter,
    id_column, clean). Unknown names raise TaskError listing the known ones."""
    registry = _registry()
    key = registry.canonical(name)
    task = registry.get(key)(files, csv_options)
    return task if key == "csv" else task.set_files(files)


__all__ = ["Task", "TaskError", "EvalData", "get_task", "task_names"]
