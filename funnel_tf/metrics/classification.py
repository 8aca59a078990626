"""Classification and correlation metric primitives in plain numpy (no sklearn/scipy needed).

Every function takes two 1-D array-likes of equal, non-zero length and returns a Python float.
Degenerate inputs (a constant vector, no positive class) return 0.0 rather than NaN, so "pick the best
checkpoint by this metric" never compares against NaN; each such case is documented per function.
"""

from __future__ import annotations

import numpy as np

__all__ = ["accuracy", "f1_binary", "matthews_corrcoef", "pearson", "spearman", "rankdata_average"]


def _pair(predictions, labels, name: str):
    """Validates and returns two equal-length, non-empty 1-D arrays."""
    p = np.asarray(predictions)
    y = np.asarray(labels)
    if p.ndim != 1 or y.ndim != 1:
        raise ValueError(f"{name}: expected 1-D predictions and labels, got shapes {p.shape} and {y.shape}")
    if p.shape[0] != y.shape[0]:
        raise ValueError(f"{name}: {p.shape[0]} predictions but {y.shape[0]} labels")
    if p.shape[0] == 0:
        raise ValueError(f"{name}: no examples")
    return p, y


def _finite(x: np.ndarray, name: str, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        bad = int(np.flatnonzero(~np.isfinite(x))[0])
        raise ValueError(f"{name}: {what}[{bad}] = {x[bad]} is not finite")
    return x


def accuracy(predictions, labels) -> float:
    """Fraction of positions where prediction == label."""
    p, y = _pair(predictions, labels, "accuracy")
    return float(np.mean(p == y))


def f1_binary(predictions, labels, positive=1) -> float:
    """F1 of the `positive` class: 2·TP / (2·TP + FP + FN); 0.0 when there is no TP, FP or FN at all."""
    p, y = _pair(predictions, labels, "f1_binary")
    pred_pos = p == positive
    true_pos = y == positive
    tp = np.sum(pred_pos & true_pos)
    denom = 2 * tp + np.sum(pred_pos & ~true_pos) + np.sum(~pred_pos & true_pos)
    return float(2 * tp / denom) if denom > 0 else 0.0


def matthews_corrcoef(predictions, labels) -> float:
    """Matthews correlation (multiclass R_K form; equals the binary phi coefficient for 2 classes).

    MCC = (c·s − Σ_k p_k·t_k) / sqrt((s² − Σ p_k²)(s² − Σ t_k²)), with c correct, s total, p_k / t_k the
    predicted / true counts of class k. Returns 0.0 when a factor of the denominator is 0 (all predictions
    or all labels one class), the GLUE/sklearn convention.
    """
    p, y = _pair(predictions, labels, "matthews_corrcoef")
    classes, inverse = np.unique(np.concatenate([p, y]), return_inverse=True)
    k = len(classes)
    p_idx, y_idx = inverse[: len(p)], inverse[len(p):]
    pred_counts = np.bincount(p_idx, minlength=k).astype(np.float64)
    true_counts = np.bincount(y_idx, minlength=k).astype(np.float64)
    correct = float(np.sum(p_idx == y_idx))
    s = float(len(p))
    cov_py = correct * s - float(pred_counts @ true_counts)
    cov_pp = s * s - float(pred_counts @ pred_counts)
    cov_yy = s * s - float(true_counts @ true_counts)
    if cov_pp == 0.0 or cov_yy == 0.0:
        return 0.0
    return float(cov_py / np.sqrt(cov_pp * cov_yy))


def pearson(predictions, labels) -> float:
    """Pearson correlation coefficient; 0.0 if either vector is constant (correlation undefined)."""
    p, y = _pair(predictions, labels, "pearson")
    p = _finite(p, "pearson", "predictions")
    y = _finite(y, "pearson", "labels")
    dp = p - p.mean()
    dy = y - y.mean()
    denom = np.sqrt(np.sum(dp * dp) * np.sum(dy * dy))
    if denom == 0.0:
        return 0.0
    # Clip guards against 1.0000000000000002 from rounding.
    return float(np.clip(np.sum(dp * dy) / denom, -1.0, 1.0))


def rankdata_average(x) -> np.ndarray:
    """1-based ranks of a 1-D array, tied values sharing the average of their ranks (scipy 'average')."""
    x = np.asarray(x)
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    # Start index of each run of equal values in sorted order.
    starts = np.flatnonzero(np.concatenate([[True], sorted_x[1:] != sorted_x[:-1]]))
    ends = np.concatenate([starts[1:], [len(x)]])  # exclusive
    avg_rank = (starts + 1 + ends) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.repeat(avg_rank, ends - starts)
    return ranks


def spearman(predictions, labels) -> float:
    """Spearman rank correlation: Pearson on average ranks (ties share ranks); 0.0 for constant input."""
    p, y = _pair(predictions, labels, "spearman")
    p = _finite(p, "spearman", "predictions")
    y = _finite(y, "spearman", "labels")
    return pearson(rankdata_average(p), rankdata_average(y))
