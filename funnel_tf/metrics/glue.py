"""GLUE metrics per task, the "main" metric used to keep the best checkpoint, and submission TSVs.

Conventions follow the original Funnel-Transformer `classifier.py` (itself the GLUE convention):
  CoLA        mcc (+ accuracy)                        main: mcc
  STS-B       pearson, spearman, their mean           main: pearson_spearman_mean  (the original's offline
              "corr"; its TF eval loop ranked by Pearson alone — we use the mean, as the GLUE score does)
  MRPC, QQP   accuracy, f1 (positive class 1), mean   main: accuracy_f1_mean
  MNLI        "mnli-m" / "mnli-mm" as separate tasks: accuracy; "mnli" takes {"matched": .., "mismatched": ..}
              and returns matched_accuracy / mismatched_accuracy   main: matched_accuracy
  AX          mcc over the 3 NLI classes (the GLUE diagnostic R3 coefficient)
  others      accuracy
Label ids follow the original's label lists (`label_names(task)`): MNLI/AX ids are
contradiction=0, entailment=1, neutral=2 — readers must use the same order or pass `label_names=`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Mapping, Sequence

import numpy as np

from funnel_tf.metrics import classification as cls
from funnel_tf.registry import Registry

__all__ = ["GLUE_TASKS", "canonical_task", "label_names", "compute_glue_metrics", "main_metric",
           "write_glue_submission"]

_BINARY = ("0", "1")
_NLI2 = ("entailment", "not_entailment")
_NLI3 = ("contradiction", "entailment", "neutral")


@dataclasses.dataclass(frozen=True)
class _Task:
    labels: tuple[str, ...] | None  # None = regression
    metrics: str  # "acc" | "mcc" | "acc_f1" | "corr"
    main: str
    submission: str | None  # official file name; None for the combined "mnli" task


_SPECS: dict[str, _Task] = {
    "cola": _Task(_BINARY, "mcc", "mcc", "CoLA.tsv"),
    "sst-2": _Task(_BINARY, "acc", "accuracy", "SST-2.tsv"),
    "mrpc": _Task(_BINARY, "acc_f1", "accuracy_f1_mean", "MRPC.tsv"),
    "sts-b": _Task(None, "corr", "pearson_spearman_mean", "STS-B.tsv"),
    "qqp": _Task(_BINARY, "acc_f1", "accuracy_f1_mean", "QQP.tsv"),
    "mnli": _Task(_NLI3, "acc", "matched_accuracy", None),
    "mnli-m": _Task(_NLI3, "acc", "accuracy", "MNLI-m.tsv"),
    "mnli-mm": _Task(_NLI3, "acc", "accuracy", "MNLI-mm.tsv"),
    "qnli": _Task(_NLI2, "acc", "accuracy", "QNLI.tsv"),
    "rte": _Task(_NLI2, "acc", "accuracy", "RTE.tsv"),
    "wnli": _Task(_BINARY, "acc", "accuracy", "WNLI.tsv"),
    "ax": _Task(_NLI3, "mcc", "mcc", "AX.tsv"),
}
_ALIASES = {"sst-2": ("sst2",), "sts-b": ("stsb",), "mnli-m": ("mnli-matched",),
            "mnli-mm": ("mnli-mismatched",), "ax": ("diagnostic",)}
# The registry: a user task name ("SST-2", "sst2", "mnli_matched"; case, blanks and "_" vs "-"
# don't matter) -> its metric spec.
_TASKS: Registry[_Task] = Registry(
    "GLUE task", normalize=lambda task: str(task).strip().lower().replace("_", "-"),
    message=lambda task, reg: f"unknown GLUE task {task!r}; expected one of {', '.join(reg.names())}")
for _name, _spec in _SPECS.items():
    _TASKS.register(_name, *_ALIASES.get(_name, ()), value=_spec)
GLUE_TASKS = _TASKS.names()
_MNLI_SPLITS = ("matched", "mismatched")


def canonical_task(task: str) -> str:
    """Maps a user task name ("SST-2", "sst2", "mnli_matched", "STS-B", ...) to our canonical key;
    UnknownNameError (a UserError and ValueError) listing the known ones otherwise."""
    return _TASKS.canonical(task)


def label_names(task: str) -> tuple[str, ...] | None:
    """Label strings in id order (None for the STS-B regression task)."""
    return _TASKS[canonical_task(task)].labels


def main_metric(task: str) -> str:
    """Key of `compute_glue_metrics` output used to pick the best checkpoint (higher is better)."""
    return _TASKS[canonical_task(task)].main


def _class_ids(values, names: Sequence[str], what: str, task: str) -> np.ndarray:
    """Accepts ids [N], logits [N, n_class] or label strings [N]; returns validated int ids [N]."""
    arr = np.asarray(values)
    if arr.ndim == 2:
        if arr.shape[1] != len(names):
            raise ValueError(f"{task}: {what} has {arr.shape[1]} logit columns but the task has "
                             f"{len(names)} classes {list(names)}")
        return np.argmax(arr, axis=-1)
    if arr.ndim != 1:
        raise ValueError(f"{task}: {what} must be 1-D ids/strings or 2-D logits, got shape {arr.shape}")
    if arr.dtype.kind in "USO":
        index = {n: i for i, n in enumerate(names)}
        out = np.empty(len(arr), dtype=np.int64)
        for i, v in enumerate(arr.tolist()):
            if str(v) not in index:
                raise ValueError(f"{task}: {what}[{i}] = {v!r} is not one of the task's labels {list(names)}")
            out[i] = index[str(v)]
        return out
    if arr.dtype.kind == "f":
        if arr.size and not np.all(arr == np.round(arr)):
            bad = int(np.flatnonzero(arr != np.round(arr))[0])
            raise ValueError(f"{task}: {what}[{bad}] = {arr[bad]} is not an integer class id")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind not in "iub":
        raise ValueError(f"{task}: {what} has unsupported dtype {arr.dtype}")
    bad = np.flatnonzero((arr < 0) | (arr >= len(names)))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{task}: {what}[{i}] = {arr[i]} is outside the task's label ids "
                         f"0..{len(names) - 1} ({list(names)}); {bad.size} such values")
    return arr.astype(np.int64)


def _regression_values(values, what: str, task: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{task}: {what} must have shape [N] or [N, 1], got {arr.shape}")
    return arr


def _single_task_metrics(key: str, predictions, labels) -> dict[str, float]:
    spec = _TASKS[key]
    if spec.labels is None:
        p = _regression_values(predictions, "predictions", key)
        y = _regression_values(labels, "labels", key)
        r, rho = cls.pearson(p, y), cls.spearman(p, y)
        return {"pearson": r, "spearman": rho, "pearson_spearman_mean": (r + rho) / 2.0}
    p = _class_ids(predictions, spec.labels, "predictions", key)
    y = _class_ids(labels, spec.labels, "labels", key)
    acc = cls.accuracy(p, y)
    if spec.metrics == "mcc":
        return {"mcc": cls.matthews_corrcoef(p, y), "accuracy": acc}
    if spec.metrics == "acc_f1":
        f1 = cls.f1_binary(p, y, positive=1)
        return {"accuracy": acc, "f1": f1, "accuracy_f1_mean": (acc + f1) / 2.0}
    return {"accuracy": acc}


def _mnli_parts(value, what: str) -> Mapping:
    if not isinstance(value, Mapping) or set(value) != set(_MNLI_SPLITS):
        raise ValueError(f"mnli: {what} must be a mapping with keys 'matched' and 'mismatched' "
                         "(or use task 'mnli-m' / 'mnli-mm' for one dev set)")
    return value


def compute_glue_metrics(task: str, predictions, labels) -> dict[str, float]:
    """Metric dict for one GLUE task; predictions are class ids, logits [N, C], label strings or (STS-B) floats."""
    key = canonical_task(task)
    if key == "mnli":
        preds = _mnli_parts(predictions, "predictions")
        labs = _mnli_parts(labels, "labels")
        return {f"{split}_accuracy": _single_task_metrics(f"mnli-{'m' if split == 'matched' else 'mm'}",
                                                          preds[split], labs[split])["accuracy"]
                for split in _MNLI_SPLITS}
    return _single_task_metrics(key, predictions, labels)


def _submission_lines(key: str, predictions, indices, label_override) -> list[str]:
    spec = _TASKS[key]
    if spec.labels is None:
        values = _regression_values(predictions, "predictions", key)
        if not np.all(np.isfinite(values)):
            bad = int(np.flatnonzero(~np.isfinite(values))[0])
            raise ValueError(f"{key}: predictions[{bad}] = {values[bad]} is not finite")
        cells = [repr(float(v)) for v in np.clip(values, 0.0, 5.0)]
    else:
        names = tuple(label_override) if label_override is not None else spec.labels
        ids = _class_ids(predictions, names, "predictions", key)
        cells = [names[i] for i in ids]
    if indices is None:
        indices = range(len(cells))
    indices = list(indices)
    if len(indices) != len(cells):
        raise ValueError(f"{key}: {len(indices)} indices but {len(cells)} predictions")
    return ["index\tprediction"] + [f"{i}\t{c}" for i, c in zip(indices, cells)]


def _atomic_write(path: str, text: str) -> None:
    """Writes via a temp file + rename so an interrupted run never leaves a half-written TSV."""
    import tensorflow as tf  # lazy: gfile gives gs:// support; the metrics themselves stay numpy-only

    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write(text)
    tf.io.gfile.rename(tmp, path, overwrite=True)


def write_glue_submission(task: str, predictions, out_dir: str, indices=None,
                          label_names: Sequence[str] | None = None) -> list[str]:
    """Writes the official GLUE test-submission TSV(s) (`index\\tprediction`) into out_dir; returns paths.

    Classification predictions (ids, logits or strings) are written as the task's label strings
    ("entailment", "0", ...); STS-B scores are clipped to [0, 5]. `indices` defaults to 0..N-1 (the
    test files' own index column). Task "mnli" takes {"matched": .., "mismatched": ..} (and likewise
    for `indices`) and writes MNLI-m.tsv and MNLI-mm.tsv. Everything is validated before any file is written.
    """
    key = canonical_task(task)
    if key == "mnli":
        preds = _mnli_parts(predictions, "predictions")
        idx = _mnli_parts(indices, "indices") if indices is not None else {s: None for s in _MNLI_SPLITS}
        jobs = [("mnli-m", preds["matched"], idx["matched"]),
                ("mnli-mm", preds["mismatched"], idx["mismatched"])]
    else:
        jobs = [(key, predictions, indices)]
    rendered = [(_TASKS[k].submission, _submission_lines(k, p, i, label_names)) for k, p, i in jobs]

    import tensorflow as tf

    tf.io.gfile.makedirs(out_dir)
    paths = []
    for name, lines in rendered:
        path = os.path.join(out_dir, name)
        _atomic_write(path, "\n".join(lines) + "\n")
        paths.append(path)
    return paths
