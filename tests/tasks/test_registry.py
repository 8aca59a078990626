"""The task registry (funnel_tf.tasks.get_task)."""

import pytest

from funnel_tf.tasks import TaskError, get_task, task_names
from funnel_tf.tasks.classification import (CsvClassificationTask, GlueTask,
                                            TextClassificationTask)
from funnel_tf.tasks.race import RaceTask
from funnel_tf.tasks.squad import SquadTask


def test_every_family_and_aliases():
    names = task_names()
    for required in ("cola", "sst-2", "mrpc", "sts-b", "qqp", "mnli", "qnli", "rte", "wnli", "ax",
                     "imdb", "ag_news", "dbpedia", "yelp2", "yelp5", "amazon2", "amazon5",
                     "squad_v1.1", "squad_v2.0", "race", "csv"):
        assert required in names
    assert isinstance(get_task("SST2"), GlueTask) and get_task("SST2").name == "sst-2"
    assert get_task("stsb").name == "sts-b" and get_task("MNLI-m").name == "mnli"
    assert isinstance(get_task("ag"), TextClassificationTask)
    assert isinstance(get_task("yelp-5"), TextClassificationTask)
    assert get_task("squad2").v2 and not get_task("squad_v1.1").v2
    assert isinstance(get_task("squad_v1.1"), SquadTask) and get_task("squad_v1.1").uses_decoder
    assert isinstance(get_task("race"), RaceTask) and not get_task("race").uses_decoder
    assert get_task("cola") is not get_task("cola")  # fresh objects (tasks carry file overrides)


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(TaskError, match=r"unknown task 'sst3'.*sst-2.*squad_v2.0"):
        get_task("sst3")


def test_csv_task_needs_files_and_columns():
    with pytest.raises(TaskError, match="--train_file"):
        get_task("csv")
    with pytest.raises(TaskError, match="--label_column"):
        get_task("csv", files={"train": "t.csv"}, csv_options={"text_a_column": 0})
    task = get_task("csv", files={"train": "t.csv", "test": "x.csv"},
                    csv_options={"text_a_column": 1, "label_column": 0, "regression": True})
    assert isinstance(task, CsvClassificationTask) and task.regression
    assert task.eval_splits == () and task.predict_splits == ("test",)
    assert task.main_metric == "pearson_spearman_mean"
