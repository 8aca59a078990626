"""GLUE: task registry, readers for the original TSV files and for TFDS `glue/*`, and features.

The registry (`GLUE_TASKS`: task name -> `GlueDataset`) is the one place that knows, per task: the
file of every split, its header and column count, which columns hold text A / text B / label /
index, the label list (or regression), the metric the paper reports and the GLUE submission file
name. `finetune.py` and the metrics read it from here.

TSV convention (GLUE's own): split every line on TAB with no quote processing (`QUOTE_NONE`), so
raw `"` characters stay in the text; the MRPC files start with a UTF-8 BOM; CoLA train/dev have no
header; MNLI train has 12 columns and dev 16, the label being the last one. Test splits carry no
labels (label -1, or NaN for STS-B) and are for prediction only.

Label orders follow the original repo (`classifier.py`), e.g. MNLI/AX
`contradiction, entailment, neutral`; TFDS uses other orders and is remapped by class name.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from typing import Dict, Optional, Tuple

import numpy as np
import tensorflow as tf

from funnel_tf.registry import Registry
from funnel_tf.text.classification import (TextExamples, encode_text_examples, iter_csv_records,
                                           unlabelled)
from funnel_tf.text.errors import DataFormatError, MalformedCounter


@dataclasses.dataclass(frozen=True)
class GlueLayout:
    """Column layout of one split's TSV file."""

    file: str
    header: Optional[str]             # first field of the header line; None = no header
    num_columns: Tuple[int, ...]      # allowed field counts per row
    text_a: int
    text_b: Optional[int] = None
    label: Optional[int] = None       # None = unlabelled (test); -1 = last column
    index: Optional[int] = None       # the file's example index/id column (submission ids)


@dataclasses.dataclass(frozen=True)
class GlueDataset:
    """Everything dataset-specific about one GLUE task (files, columns, labels, metric, TFDS names);
    the trainable task is `funnel_tf.tasks.classification.GlueTask`."""

    name: str                                  # registry key, e.g. "mnli"
    folder: str                                # folder of the original GLUE download, e.g. "MNLI"
    splits: Dict[str, GlueLayout]              # split → layout (train, dev..., test...)
    label_names: Optional[Tuple[str, ...]]     # None → regression (STS-B)
    metric: str                    # "mcc" | "accuracy" | "f1_accuracy" | "pearson_spearman"
    eval_splits: Tuple[str, ...]
    test_splits: Tuple[str, ...]
    submission_files: Dict[str, str]           # test split → GLUE submission file name
    tfds_config: str                           # TFDS `glue/<config>`
    tfds_splits: Dict[str, str]                # our split → TFDS split
    tfds_label_names: Optional[Tuple[str, ...]] = None  # TFDS ClassLabel names in TFDS order
    regression_range: Tuple[float, float] = (0.0, 5.0)
    folder_aliases: Tuple[str, ...] = ()

    @property
    def is_regression(self) -> bool:
        return self.label_names is None

    @property
    def num_classes(self) -> int:
        return 1 if self.label_names is None else len(self.label_names)

    @property
    def is_pair(self) -> bool:
        return next(iter(self.splits.values())).text_b is not None

    def tfds_label_map(self) -> Optional[np.ndarray]:
        """TFDS label index → our label index."""
        if self.label_names is None or self.tfds_label_names is None:
            return None
        if self.label_names == ("0", "1"):          # TFDS index == the TSV's integer label
            return np.array([0, 1], np.int32)
        return np.array([self.label_names.index(n) for n in self.tfds_label_names], np.int32)


_BINARY = ("0", "1")
_NLI = ("contradiction", "entailment", "neutral")
_ENT = ("entailment", "not_entailment")
_STD_TFDS_SPLITS = {"train": "train", "dev": "validation", "test": "test"}


def _pair_task(name, folder, label_names, metric, tfds_config, tfds_labels, submission,
               header="index", columns=4, a=1, b=2, label=3, test_columns=3, test_a=1, test_b=2,
               index=0, test_index=0, test_header="index"):
    labelled = GlueLayout("", header, (columns,), a, b, label, index)
    return GlueDataset(
        name=name, folder=folder,
        splits={"train": dataclasses.replace(labelled, file="train.tsv"),
                "dev": dataclasses.replace(labelled, file="dev.tsv"),
                "test": GlueLayout("test.tsv", test_header, (test_columns,), test_a, test_b, None,
                                   test_index)},
        label_names=label_names, metric=metric, eval_splits=("dev",), test_splits=("test",),
        submission_files={"test": submission}, tfds_config=tfds_config,
        tfds_splits=dict(_STD_TFDS_SPLITS), tfds_label_names=tfds_labels)


_DATASETS: Dict[str, GlueDataset] = {
    "cola": GlueDataset(
        name="cola", folder="CoLA",
        splits={"train": GlueLayout("train.tsv", None, (4,), 3, None, 1),
                "dev": GlueLayout("dev.tsv", None, (4,), 3, None, 1),
                "test": GlueLayout("test.tsv", "index", (2,), 1, None, None, 0)},
        label_names=_BINARY, metric="mcc", eval_splits=("dev",), test_splits=("test",),
        submission_files={"test": "CoLA.tsv"}, tfds_config="cola",
        tfds_splits=dict(_STD_TFDS_SPLITS), tfds_label_names=("unacceptable", "acceptable")),
    "sst-2": GlueDataset(
        name="sst-2", folder="SST-2",
        splits={"train": GlueLayout("train.tsv", "sentence", (2,), 0, None, 1),
                "dev": GlueLayout("dev.tsv", "sentence", (2,), 0, None, 1),
                "test": GlueLayout("test.tsv", "index", (2,), 1, None, None, 0)},
        label_names=_BINARY, metric="accuracy", eval_splits=("dev",), test_splits=("test",),
        submission_files={"test": "SST-2.tsv"}, tfds_config="sst2",
        tfds_splits=dict(_STD_TFDS_SPLITS), tfds_label_names=("negative", "positive")),
    "mrpc": _pair_task("mrpc", "MRPC", _BINARY, "f1_accuracy", "mrpc",
                       ("not_equivalent", "equivalent"), "MRPC.tsv", header="Quality",
                       columns=5, a=3, b=4, label=0, index=None, test_columns=5, test_a=3,
                       test_b=4),
    "sts-b": _pair_task("sts-b", "STS-B", None, "pearson_spearman", "stsb", None, "STS-B.tsv",
                        columns=10, a=7, b=8, label=9, test_columns=9, test_a=7, test_b=8),
    "qqp": _pair_task("qqp", "QQP", _BINARY, "f1_accuracy", "qqp", ("not_duplicate", "duplicate"),
                      "QQP.tsv", header="id", columns=6, a=3, b=4, label=5, test_header="id"),
    "qnli": _pair_task("qnli", "QNLI", _ENT, "accuracy", "qnli", _ENT, "QNLI.tsv"),
    "rte": _pair_task("rte", "RTE", _ENT, "accuracy", "rte", _ENT, "RTE.tsv"),
    "wnli": _pair_task("wnli", "WNLI", _BINARY, "accuracy", "wnli",
                       ("not_entailment", "entailment"), "WNLI.tsv"),
    "mnli": GlueDataset(
        name="mnli", folder="MNLI",
        splits={
            "train": GlueLayout("train.tsv", "index", (12, 16), 8, 9, -1, 0),
            "dev_matched": GlueLayout("dev_matched.tsv", "index", (12, 16), 8, 9, -1, 0),
            "dev_mismatched": GlueLayout("dev_mismatched.tsv", "index", (12, 16), 8, 9, -1, 0),
            "test_matched": GlueLayout("test_matched.tsv", "index", (10,), 8, 9, None, 0),
            "test_mismatched": GlueLayout("test_mismatched.tsv", "index", (10,), 8, 9, None, 0)},
        label_names=_NLI, metric="accuracy", eval_splits=("dev_matched", "dev_mismatched"),
        test_splits=("test_matched", "test_mismatched"),
        submission_files={"test_matched": "MNLI-m.tsv", "test_mismatched": "MNLI-mm.tsv"},
        tfds_config="mnli",
        tfds_splits={"train": "train", "dev_matched": "validation_matched",
                     "dev_mismatched": "validation_mismatched", "test_matched": "test_matched",
                     "test_mismatched": "test_mismatched"},
        tfds_label_names=("entailment", "neutral", "contradiction")),
    # GLUE diagnostic: test only, scored by the GLUE server with a model trained on MNLI.
    "ax": GlueDataset(
        name="ax", folder="AX", folder_aliases=("diagnostic",),
        splits={"test": GlueLayout("diagnostic.tsv", "index", (3,), 1, 2, None, 0)},
        label_names=_NLI, metric="mcc", eval_splits=(), test_splits=("test",),
        submission_files={"test": "AX.tsv"}, tfds_config="ax", tfds_splits={"test": "test"},
        tfds_label_names=("entailment", "neutral", "contradiction")),
}
_ALIASES = {"sst-2": ("sst2",), "sts-b": ("stsb", "sts"), "ax": ("diagnostic",),
            "mnli": ("mnli_matched", "mnli_mismatched", "mnli-m", "mnli-mm")}
# The registry (task name or alias, case-insensitive -> its GlueDataset).
GLUE_TASKS: Registry[GlueDataset] = Registry("GLUE task", normalize=lambda name: name.lower().strip())
for _name, _spec in _DATASETS.items():
    GLUE_TASKS.register(_name, *_ALIASES.get(_name, ()), value=_spec)


def get_glue_task(name: str) -> GlueDataset:
    """Registry lookup, case-insensitive, accepting common aliases (sst2, stsb, diagnostic); an
    unknown name raises UnknownNameError (a UserError and KeyError) listing the known ones."""
    return GLUE_TASKS.get(name)


def _split_layout(task: GlueDataset, split: str) -> GlueLayout:
    if split not in task.splits:
        raise KeyError(f"{task.name}: unknown split {split!r}; known: {sorted(task.splits)}")
    return task.splits[split]


def glue_file_path(task_name: str, data_dir: str, split: str) -> str:
    """Finds the split's file under `data_dir` (the GLUE root or the task folder itself)."""
    task = get_glue_task(task_name)
    layout = _split_layout(task, split)
    tried = []
    for folder in (task.folder,) + task.folder_aliases + ("",):
        path = os.path.join(data_dir, folder, layout.file) if folder else os.path.join(
            data_dir, layout.file)
        tried.append(path)
        if tf.io.gfile.exists(path):
            return path
    raise FileNotFoundError(f"GLUE {task.name} {split}: no {layout.file} found; tried {tried}")


def read_glue_tsv(task_name: str, path: str, split: str, *,
                  skip_malformed: bool = False) -> TextExamples:
    """Parses one GLUE TSV file laid out as `split` of `task_name` (no tokenization).

    Raises `DataFormatError` naming file and line for a wrong header, a wrong column count or a
    label outside the task's label set (STS-B: not a number in [0, 5]); with
    `skip_malformed=True` such rows are skipped and counted in `num_skipped` instead.
    """
    task = get_glue_task(task_name)
    layout = _split_layout(task, split)
    counter = MalformedCounter(skip_malformed)
    records = iter_csv_records(path, "\t", csv.QUOTE_NONE)  # utf-8-sig: MRPC's BOM is dropped
    if layout.header is not None:
        first = next(records, None)
        if first is None:
            raise DataFormatError("file is empty (expected a header line)", path, 1)
        if first[1][0].strip() != layout.header or len(first[1]) not in layout.num_columns:
            raise DataFormatError(
                f"{task.name} {split}: expected a header starting with {layout.header!r} and "
                f"{' or '.join(map(str, layout.num_columns))} columns, found "
                f"{first[1][:3]}... ({len(first[1])} columns)", path, first[0])
    text_a, text_b, labels, ids = [], [], [], []
    for position, (line, row) in enumerate(records):  # position: 0-based data row
        if len(row) not in layout.num_columns:
            counter.report(DataFormatError(
                f"{task.name} {split}: expected {' or '.join(map(str, layout.num_columns))} "
                f"tab-separated columns, found {len(row)}", path, line))
            continue
        if layout.label is not None:
            raw = row[layout.label].strip()
            try:
                labels.append(_parse_label(task, raw))
            except ValueError as e:
                counter.report(DataFormatError(f"{task.name} {split}: {e}", path, line))
                continue
        text_a.append(row[layout.text_a])
        if layout.text_b is not None:
            text_b.append(row[layout.text_b])
        # The file's own index column, else the row's 0-based position among the data rows:
        # what the GLUE files' `index` column holds, so ids look alike for every task.
        ids.append(row[layout.index] if layout.index is not None else str(position))
    counter.log(str(path))
    has_labels = layout.label is not None
    label_array = (np.asarray(labels) if has_labels
                   else unlabelled(len(ids), task.is_regression))
    return TextExamples(text_a, text_b if layout.text_b is not None else None, label_array, ids,
                        task.label_names, has_labels, counter.count, str(path))


def _parse_label(task: GlueDataset, raw: str):
    if task.label_names is None:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"score {raw!r} is not a number") from None
        lo, hi = task.regression_range
        if not (math.isfinite(value) and lo <= value <= hi):
            raise ValueError(f"score {raw!r} outside [{lo}, {hi}]")
        return value
    if raw not in task.label_names:
        raise ValueError(f"label {raw!r} not in {list(task.label_names)}")
    return task.label_names.index(raw)


def load_glue(task_name: str, data_dir: str, split: str, *,
              skip_malformed: bool = False) -> TextExamples:
    """Examples of a GLUE task split from the original TSV files under `data_dir`."""
    return read_glue_tsv(task_name, glue_file_path(task_name, data_dir, split), split,
                         skip_malformed=skip_malformed)


def load_glue_tfds(task_name: str, split: str, data_dir: str) -> TextExamples:
    """Examples of a GLUE task split from an already prepared TFDS `glue/<config>` dataset.

    Nothing is downloaded: a missing or unprepared `data_dir` raises `FileNotFoundError` saying how
    to prepare it. Examples come back in the file's order (sorted by TFDS `idx`) and with labels
    remapped to the registry's order; TFDS's test labels (-1) become unlabelled.
    """
    import tensorflow_datasets as tfds

    task = get_glue_task(task_name)
    if split not in task.tfds_splits:
        raise KeyError(f"{task.name}: split {split!r} not available from TFDS; "
                       f"known: {sorted(task.tfds_splits)}")
    name = f"glue/{task.tfds_config}"
    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
        raise FileNotFoundError(
            f"TFDS dataset {name} is not prepared under {data_dir} (looked in {builder.data_dir}); "
            f"prepare it first, e.g. `tfds build {name} --data_dir={data_dir}`")
    tfds_split = task.tfds_splits[split]
    if tfds_split not in builder.info.splits:
        raise KeyError(f"{name} in {data_dir} has no split {tfds_split!r}")
    keys = [k for k in builder.info.features.keys() if k not in ("label", "idx")]
    key_a, key_b = _tfds_text_keys(keys)
    ds = builder.as_dataset(split=tfds_split, shuffle_files=False)
    parts: Dict[str, list] = {"idx": [], "label": [], "a": [], "b": []}
    for batch in ds.batch(4096).as_numpy_iterator():
        parts["idx"].append(batch["idx"])
        parts["label"].append(batch["label"])
        parts["a"].append(batch[key_a])
        if key_b is not None:
            parts["b"].append(batch[key_b])
    if not parts["idx"]:
        raise DataFormatError(f"split {tfds_split} is empty", path=builder.data_dir)
    idx = np.concatenate(parts["idx"])
    order = np.argsort(idx, kind="stable")
    idx = idx[order]
    raw_labels = np.concatenate(parts["label"])[order]
    text_a = [t.decode("utf-8") for t in np.concatenate(parts["a"])[order]]
    text_b = ([t.decode("utf-8") for t in np.concatenate(parts["b"])[order]]
              if key_b is not None else None)
    has_labels = not np.all(raw_labels == -1)  # TFDS writes -1 for every test label
    if not has_labels:
        labels = unlabelled(len(idx), task.is_regression)
    elif task.is_regression:
        labels = raw_labels.astype(np.float32)
    else:
        if np.any(raw_labels < 0):
            bad = int(idx[np.argmax(raw_labels < 0)])
            raise DataFormatError(f"{name} {tfds_split}: missing label", path=builder.data_dir,
                                  example_id=str(bad))
        labels = task.tfds_label_map()[raw_labels.astype(np.int64)]
    return TextExamples(text_a, text_b, labels, [str(i) for i in idx], task.label_names,
                        has_labels, 0, f"tfds:{name}:{tfds_split}@{data_dir}")


def _tfds_text_keys(keys) -> Tuple[str, Optional[str]]:
    for a, b in (("sentence", None), ("sentence1", "sentence2"), ("question1", "question2"),
                 ("question", "sentence"), ("premise", "hypothesis")):
        if a in keys and (b is None or b in keys):
            return a, b
    raise ValueError(f"unrecognised TFDS GLUE features {sorted(keys)}")


def glue_dataset(task_name: str, split: str, tokenizer, seq_len: int = 128, *,
                 data_dir: Optional[str] = None, tfds_data_dir: Optional[str] = None,
                 batch_size: Optional[int] = None, pad_to_multiple_of: Optional[int] = None,
                 shuffle: bool = False, seed: Optional[int] = None, repeat: bool = False,
                 skip_malformed: bool = False) -> Tuple[tf.data.Dataset, TextExamples]:
    """Fixed-shape features of a GLUE split, from the TSVs (`data_dir`) or TFDS (`tfds_data_dir`).

    Returns the dataset (see `encode_text_examples` for the keys) and the parsed examples (ids,
    label names, skip count) for writing predictions.
    """
    if (data_dir is None) == (tfds_data_dir is None):
        raise ValueError("give exactly one of data_dir (GLUE TSVs) or tfds_data_dir")
    if data_dir is not None:
        examples = load_glue(task_name, data_dir, split, skip_malformed=skip_malformed)
    else:
        examples = load_glue_tfds(task_name, split, tfds_data_dir)
    ds = encode_text_examples(examples, tokenizer, seq_len, batch_size=batch_size,
                              pad_to_multiple_of=pad_to_multiple_of, shuffle=shuffle, seed=seed,
                              repeat=repeat)
    return ds, examples
