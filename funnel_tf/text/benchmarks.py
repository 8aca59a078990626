"""The paper's text-classification benchmarks in their original formats: IMDB (aclImdb folders or
a `label,text` CSV), AG News, DBpedia, Yelp-2/5 and Amazon-2/5 (Zhang et al.'s headerless quoted
CSVs), registered by name in `TEXT_CLS_TASKS`, read into `classification.TextExamples` with the
original repo's web-text cleaning. (classification.py holds the generic pipeline and CSV reader.)

Conventions (original `classifier.py`): AG News, DBpedia and Amazon use title as A and body as B;
Yelp and IMDB are single texts. Labels "1".."K" map to 0..K-1.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, Tuple

import numpy as np
import tensorflow as tf

from funnel_tf.registry import Registry
from funnel_tf.text.classification import TextExamples, clean_web_text, iter_csv_records
from funnel_tf.text.errors import DataFormatError, MalformedCounter


@dataclasses.dataclass(frozen=True)
class TextClsTask:
    """A text-classification benchmark in Zhang et al.'s CSV format (or IMDB's)."""

    name: str
    label_names: Tuple[str, ...]
    num_columns: int          # label, then 1 (text) or 2 (title, body) quoted fields
    files: Dict[str, str]     # split → file name inside the task folder
    metric: str = "accuracy"

    @property
    def is_pair(self) -> bool:
        return self.num_columns == 3


def _numbered(k: int) -> Tuple[str, ...]:
    return tuple(str(i) for i in range(1, k + 1))


# The original evaluates on test.csv ("dev" = "test" here); label "1".."K" → 0..K-1.
_ZHANG_FILES = {"train": "train.csv", "dev": "test.csv", "test": "test.csv"}
_ALIASES = {"ag_news": ("ag", "agnews"), "yelp2": ("yelp-2", "yelp_polarity"), "yelp5": ("yelp-5",),
            "amazon2": ("amazon-2", "amazon_polarity"), "amazon5": ("amazon-5",)}
# The registry (benchmark name or alias, case-insensitive -> its TextClsTask spec).
TEXT_CLS_TASKS: Registry[TextClsTask] = Registry("text-classification task",
                                                 normalize=lambda name: name.lower().strip())
for _spec in (
    TextClsTask("ag_news", _numbered(4), 3, _ZHANG_FILES),
    TextClsTask("dbpedia", _numbered(14), 3, _ZHANG_FILES),
    TextClsTask("yelp2", _numbered(2), 2, _ZHANG_FILES),
    TextClsTask("yelp5", _numbered(5), 2, _ZHANG_FILES),
    TextClsTask("amazon2", _numbered(2), 3, _ZHANG_FILES),
    TextClsTask("amazon5", _numbered(5), 3, _ZHANG_FILES),
    # IMDB: aclImdb folders train/{neg,pos}, test/{neg,pos}; or a `label,text` CSV (label 0/1).
    TextClsTask("imdb", ("neg", "pos"), 2, {"train": "train", "dev": "test", "test": "test"}),
):
    TEXT_CLS_TASKS.register(_spec.name, *_ALIASES.get(_spec.name, ()), value=_spec)


def get_text_cls_task(name: str) -> TextClsTask:
    """Registry lookup, case-insensitive, accepting aliases (ag, yelp-2, amazon_polarity); an
    unknown name raises UnknownNameError (a UserError and KeyError) listing the known ones."""
    return TEXT_CLS_TASKS.get(name)


def read_zhang_csv(path: str, task: TextClsTask, *, skip_malformed: bool = False,
                   split_name: str = "") -> TextExamples:
    """Reads a headerless quoted `"label","title","body"` (or `"label","text"`) CSV."""
    counter = MalformedCounter(skip_malformed)
    split_name = split_name or os.path.splitext(os.path.basename(path))[0]
    text_a, text_b, labels, ids = [], [], [], []
    index = {name: i for i, name in enumerate(task.label_names)}
    for line, row in iter_csv_records(path, ","):
        if len(row) != task.num_columns:
            counter.report(DataFormatError(
                f"{task.name}: expected {task.num_columns} columns, found {len(row)}", path, line))
            continue
        raw = row[0].strip()
        if raw not in index:
            counter.report(DataFormatError(
                f"{task.name}: label {raw!r} not in 1..{len(task.label_names)}", path, line))
            continue
        text_a.append(clean_web_text(row[1]))
        if task.is_pair:
            text_b.append(clean_web_text(row[2]))
        labels.append(index[raw])
        ids.append(f"{split_name}-{line}")
    counter.log(str(path))
    return TextExamples(text_a, text_b if task.is_pair else None, np.array(labels, np.int32), ids,
                        task.label_names, True, counter.count, str(path))


def read_imdb_folder(split_dir: str, *, skip_malformed: bool = False) -> TextExamples:
    """Reads aclImdb's `<split>/{neg,pos}/*.txt` (sorted by file name; neg=0, pos=1)."""
    counter = MalformedCounter(skip_malformed)
    text_a, labels, ids = [], [], []
    for label, name in enumerate(("neg", "pos")):
        folder = os.path.join(split_dir, name)
        if not tf.io.gfile.isdir(folder):
            raise FileNotFoundError(f"IMDB folder {folder} not found (expected aclImdb layout "
                                    f"<split>/neg, <split>/pos)")
        for filename in sorted(tf.io.gfile.listdir(folder)):
            if not filename.endswith(".txt"):
                continue
            path = os.path.join(folder, filename)
            with tf.io.gfile.GFile(path, "rb") as f:
                raw = f.read()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                counter.report(DataFormatError(f"not valid UTF-8: {e.reason}", path,
                                               raw[:e.start].count(b"\n") + 1))
                continue
            text_a.append(clean_web_text(text.strip()))
            labels.append(label)
            ids.append(f"{name}/{filename}")
    counter.log(split_dir)
    return TextExamples(text_a, None, np.array(labels, np.int32), ids, ("neg", "pos"), True,
                        counter.count, split_dir)


def read_imdb_csv(path: str, *, skip_malformed: bool = False) -> TextExamples:
    """Reads a `label,text` CSV with header (labels 0/1 or neg/pos), cleaning the text."""
    counter = MalformedCounter(skip_malformed)
    records = iter_csv_records(path, ",")
    first = next(records, None)
    if first is None:
        raise DataFormatError("file is empty", path, 1)
    header = [h.strip().lower() for h in first[1]]
    if "label" not in header or "text" not in header:
        raise DataFormatError(f"expected a header with 'label' and 'text', found {first[1]}",
                              path, 1)
    li, ti = header.index("label"), header.index("text")
    mapping = {"0": 0, "1": 1, "neg": 0, "pos": 1}
    split_name = os.path.splitext(os.path.basename(path))[0]
    text_a, labels, ids = [], [], []
    for line, row in records:
        if len(row) != len(header):
            counter.report(DataFormatError(f"expected {len(header)} columns, found {len(row)}",
                                           path, line))
            continue
        raw = row[li].strip().lower()
        if raw not in mapping:
            counter.report(DataFormatError(f"label {row[li]!r} not in 0/1/neg/pos", path, line))
            continue
        text_a.append(clean_web_text(row[ti]))
        labels.append(mapping[raw])
        ids.append(f"{split_name}-{line}")
    counter.log(str(path))
    return TextExamples(text_a, None, np.array(labels, np.int32), ids, ("neg", "pos"), True,
                        counter.count, str(path))


def load_text_classification(task: str, data_path: str, split: str = "train", *,
                             skip_malformed: bool = False) -> TextExamples:
    """Examples of `task` for `split` from `data_path`.

    `data_path` is the task folder (holding train.csv/test.csv, or aclImdb's train/ and test/)
    or directly a CSV file.
    """
    spec = get_text_cls_task(task)
    if split not in spec.files:
        raise KeyError(f"{spec.name}: unknown split {split!r}; known {sorted(spec.files)}")
    if spec.name == "imdb":
        if tf.io.gfile.isdir(data_path):
            candidate = os.path.join(data_path, spec.files[split])
            if tf.io.gfile.isdir(candidate):
                return read_imdb_folder(candidate, skip_malformed=skip_malformed)
            raise FileNotFoundError(f"IMDB: {candidate} not found")
        return read_imdb_csv(data_path, skip_malformed=skip_malformed)
    path = data_path
    if tf.io.gfile.isdir(data_path):
        path = os.path.join(data_path, spec.files[split])
    return read_zhang_csv(path, spec, skip_malformed=skip_malformed, split_name=split)
