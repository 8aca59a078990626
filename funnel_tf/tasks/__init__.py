"""Task registry: `--task` name -> a Task object (see base.py for the interface).

Names: every GLUE task (cola, sst-2, mrpc, sts-b, qqp, mnli, qnli, rte, wnli, ax; aliases such as
sst2, stsb, mnli-m accepted), the text-classification benchmarks (imdb, ag_news, dbpedia, yelp2,
yelp5, amazon2, amazon5), `csv` (any labelled CSV/TSV, columns given by options), squad_v1.1,
squad_v2.0 and race.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional

from funnel_tf.tasks.base import EvalData, Task, TaskError, TaskObjective

_SQUAD = {"squad_v1.1": "1.1", "squad1.1": "1.1", "squad_v1": "1.1", "squad": "1.1",
          "squad_v2.0": "2.0", "squad2.0": "2.0", "squad_v2": "2.0", "squad2": "2.0"}


def task_names():
    """Canonical task names accepted by `get_task` (aliases not listed)."""
    from funnel_tf.tasks.classification import GLUE_NAMES, TEXT_CLS_NAMES

    return list(GLUE_NAMES) + list(TEXT_CLS_NAMES) + ["csv", "squad_v1.1", "squad_v2.0", "race"]


def get_task(name: str, files: Optional[Mapping[str, str]] = None,
             csv_options: Optional[Dict] = None) -> Task:
    """A fresh Task for `name` (case-insensitive). `files` overrides per-split paths
    ({"train": ..., "dev": ..., "test": ...}); `csv_options` configures the `csv` task
    (text_a_column, label_column, text_b_column, label_names, regression, has_header, delimiter,
    id_column, clean). Unknown names raise TaskError listing the known ones."""
    from funnel_tf.tasks import classification, race, squad

    key = str(name).strip().lower()
    if key == "csv":
        options = dict(csv_options or {})
        if not files:
            raise TaskError("task csv needs its files (--train_file, --dev_file, --test_file)")
        if options.get("text_a_column") is None:
            raise TaskError("task csv needs --text_a_column (index or header name)")
        if options.get("label_column") is None:
            raise TaskError("task csv needs --label_column (index or header name)")
        return classification.CsvClassificationTask(files, **options)
    if key in _SQUAD:
        task = squad.SquadTask(_SQUAD[key])
    elif key == "race":
        task = race.RaceTask()
    else:
        try:
            task = classification.GlueTask(key)
        except KeyError:
            try:
                task = classification.TextClassificationTask(key)
            except KeyError:
                raise TaskError(f"unknown task {name!r}; choose one of {task_names()} "
                                f"(GLUE aliases like sst2/stsb/mnli-m also work)") from None
    return task.set_files(files)


__all__ = ["Task", "TaskError", "TaskObjective", "EvalData", "get_task", "task_names"]
