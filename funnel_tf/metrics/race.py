"""RACE multiple-choice accuracy overall and per level (middle-school / high-school), as the paper reports.

Answers may be option indices 0..3, letters "A".."D", or logits [N, 4]. Levels are "middle" / "high";
`level_of` derives one from a RACE file id ("high80.txt") or path (".../dev/middle/12.txt").
"""

from __future__ import annotations

import os
import re

import numpy as np

from funnel_tf.metrics import classification as cls

__all__ = ["LEVELS", "MAIN_METRIC", "level_of", "compute_race_metrics"]

LEVELS = ("middle", "high")
MAIN_METRIC = "accuracy"
_NUM_OPTIONS = 4
_LETTERS = "ABCD"


def level_of(example_id: str) -> str:
    """Level of a RACE example from its id or path: "high80.txt" -> "high", "RACE/dev/middle/3.txt" -> "middle"."""
    s = os.fspath(example_id).replace("\\", "/")
    parts = [p for p in s.split("/") if p]
    for part in reversed(parts[:-1]):  # directory names win over the file name
        if part in LEVELS:
            return part
    m = re.match(r"(middle|high)", parts[-1] if parts else "")
    if not m:
        raise ValueError(f"cannot tell the RACE level (middle/high) of example id {example_id!r}")
    return m.group(1)


def _answers(values, what: str) -> np.ndarray:
    """Validated option indices [N] from indices, letters or logits [N, 4]."""
    arr = np.asarray(values)
    if arr.ndim == 2:
        if arr.shape[1] != _NUM_OPTIONS:
            raise ValueError(f"RACE: {what} logits must have {_NUM_OPTIONS} columns, got shape {arr.shape}")
        return np.argmax(arr, axis=-1)
    if arr.ndim != 1:
        raise ValueError(f"RACE: {what} must be 1-D answers or 2-D logits, got shape {arr.shape}")
    if arr.dtype.kind in "USO":
        out = np.empty(len(arr), dtype=np.int64)
        for i, raw in enumerate(arr.tolist()):
            v = str(raw).strip().upper()
            if len(v) != 1 or v not in _LETTERS:
                raise ValueError(f"RACE: {what}[{i}] = {raw!r} is not one of A, B, C, D")
            out[i] = _LETTERS.index(v)
        return out
    if arr.dtype.kind not in "iu":
        raise ValueError(f"RACE: {what} has unsupported dtype {arr.dtype}; use ints 0..3 or letters")
    bad = np.flatnonzero((arr < 0) | (arr >= _NUM_OPTIONS))
    if bad.size:
        raise ValueError(f"RACE: {what}[{int(bad[0])}] = {arr[bad[0]]} is outside 0..{_NUM_OPTIONS - 1}")
    return arr.astype(np.int64)


def compute_race_metrics(predictions, labels, levels) -> dict:
    """{"accuracy", "total", "accuracy_middle", "total_middle", "accuracy_high", "total_high"}.

    `levels` holds "middle"/"high" per question (or ids/paths `level_of` understands). A level with no
    questions gets total 0 and no accuracy key (rather than NaN).
    """
    p = _answers(predictions, "predictions")
    y = _answers(labels, "labels")
    lv = np.asarray([x if x in LEVELS else level_of(x) for x in np.asarray(levels, dtype=object).tolist()])
    if not (len(p) == len(y) == len(lv)):
        raise ValueError(f"RACE: {len(p)} predictions, {len(y)} labels and {len(lv)} levels differ in length")
    out = {"accuracy": cls.accuracy(p, y), "total": int(len(p))}
    for level in LEVELS:
        sel = lv == level
        out[f"total_{level}"] = int(sel.sum())
        if sel.any():
            out[f"accuracy_{level}"] = cls.accuracy(p[sel], y[sel])
    return out
