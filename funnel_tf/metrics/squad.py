"""SQuAD v1.1 and v2.0 evaluation: our implementation of the official scripts' published algorithm.

Answer normalisation (both versions): lowercase, drop ASCII punctuation (`string.punctuation`), drop the
words a/an/the, collapse whitespace. EM and token-F1 take the max over the gold answers.
v1.1 (`evaluate_v1`): every question has golds; F1 of two empty token lists is 0.
v2.0 (`evaluate_v2`): golds that normalise to "" are dropped and a question with none has the single gold
"" (F1 of two empty lists is 1); HasAns/NoAns splits; with `null_odds` (higher = more likely no answer, as
our predictor writes to null_odds.json) predictions whose odds exceed `null_threshold` (default 1.0, the
script's `--na-prob-thresh`) count as "no answer", and a sweep over the odds finds best_exact / best_f1 and
their thresholds, as the script's `find_best_thresh`, quirks included (see `best_null_threshold`).
Scores are percentages. Unlike the scripts, a question without a prediction is an error unless
`allow_missing=True`, in which case it scores 0 and is counted in every total (v1.1's rule).
"""

from __future__ import annotations

import collections
import json
import math
import os
import re
import string
from typing import Mapping

__all__ = ["normalize_answer", "exact_match_score", "f1_score", "load_json", "evaluate_v1", "evaluate_v2",
           "raw_scores_v2", "best_null_threshold", "MAIN_METRIC_V1", "MAIN_METRIC_V2"]

MAIN_METRIC_V1 = "f1"
MAIN_METRIC_V2 = "best_f1"  # when null_odds are given; "f1" otherwise

_PUNCT = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text: str) -> str:
    """Lowercase, remove ASCII punctuation, remove articles a/an/the, collapse whitespace (this order)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match_score(gold: str, prediction: str) -> int:
    """1 if the normalised strings are equal, else 0."""
    return int(normalize_answer(gold) == normalize_answer(prediction))


def f1_score(gold: str, prediction: str, v2: bool = True) -> float:
    """Bag-of-tokens F1 of the normalised strings; empty-vs-empty is 1 under v2.0 rules and 0 under v1.1."""
    gold_toks = normalize_answer(gold).split()
    pred_toks = normalize_answer(prediction).split()
    if v2 and (not gold_toks or not pred_toks):
        return float(gold_toks == pred_toks)
    num_same = sum((collections.Counter(gold_toks) & collections.Counter(pred_toks)).values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_toks)
    recall = num_same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def load_json(source, what: str = "JSON"):
    """Returns `source` itself if it is already parsed, else loads it from a path (local or gs://)."""
    if not isinstance(source, (str, os.PathLike)):
        return source
    import tensorflow as tf  # lazy: gfile reads gs:// paths; the metrics themselves need only the stdlib

    path = os.fspath(source)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{what} file not found: {path}")
    with tf.io.gfile.GFile(path, "r") as f:
        text = f.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}:{e.colno}: invalid {what}: {e.msg}") from None


def _questions(dataset):
    """Yields (qid, gold answer texts) from a SQuAD JSON dict, its "data" list, or a path; checks structure."""
    data = load_json(dataset, "SQuAD dataset")
    if isinstance(data, Mapping):
        if "data" not in data:
            raise ValueError("SQuAD dataset: top-level object has no 'data' key")
        data = data["data"]
    if not isinstance(data, list):
        raise ValueError(f"SQuAD dataset: 'data' must be a list of articles, got {type(data).__name__}")
    seen = set()
    for a, article in enumerate(data):
        title = article.get("title", "?") if isinstance(article, Mapping) else "?"
        try:
            for p, paragraph in enumerate(article["paragraphs"]):
                for q, qa in enumerate(paragraph["qas"]):
                    qid = qa["id"]
                    golds = [ans["text"] for ans in qa["answers"]]
                    if qid in seen:
                        raise ValueError(f"SQuAD dataset: question id {qid!r} appears twice "
                                         f"(article {a} {title!r})")
                    seen.add(qid)
                    yield qid, golds
        except (KeyError, TypeError) as e:
            raise ValueError(f"SQuAD dataset: malformed article {a} ({title!r}): missing or bad field {e}") from None


def _checked_predictions(predictions) -> Mapping[str, str]:
    preds = load_json(predictions, "SQuAD predictions")
    if not isinstance(preds, Mapping):
        raise ValueError(f"SQuAD predictions must map question id -> answer text, got {type(preds).__name__}")
    for qid, text in preds.items():
        if not isinstance(text, str):
            raise ValueError(f"SQuAD predictions: answer for {qid!r} is {type(text).__name__}, not a string")
    return preds


def _missing_error(missing: list[str], total: int) -> ValueError:
    return ValueError(f"{len(missing)} of {total} questions have no prediction (first: {missing[:3]}); "
                      "pass allow_missing=True to score them 0")


def evaluate_v1(dataset, predictions, allow_missing: bool = False) -> dict:
    """Official SQuAD v1.1 metrics: {"exact_match", "f1"} in percent (+ "total", and "missing" if any)."""
    preds = _checked_predictions(predictions)
    em_sum = f1_sum = 0.0
    total = 0
    missing = []
    for qid, golds in _questions(dataset):
        total += 1
        if not golds:
            raise ValueError(f"SQuAD v1.1: question {qid!r} has no gold answers (a v2.0 file? use evaluate_v2)")
        if qid not in preds:
            missing.append(qid)
            continue
        em_sum += max(exact_match_score(g, preds[qid]) for g in golds)
        f1_sum += max(f1_score(g, preds[qid], v2=False) for g in golds)
    if total == 0:
        raise ValueError("SQuAD dataset has no questions")
    if missing and not allow_missing:
        raise _missing_error(missing, total)
    out = {"exact_match": 100.0 * em_sum / total, "f1": 100.0 * f1_sum / total, "total": total}
    if missing:
        out["missing"] = len(missing)
    return out


def raw_scores_v2(dataset, predictions):
    """Per-question EM and F1 before any null threshold: (exact, f1, has_answer, missing_ids)."""
    preds = _checked_predictions(predictions)
    exact, f1, has_answer, missing = {}, {}, {}, []
    for qid, golds in _questions(dataset):
        has_answer[qid] = bool(golds)
        golds = [g for g in golds if normalize_answer(g)] or [""]
        if qid not in preds:
            missing.append(qid)
            continue
        exact[qid] = float(max(exact_match_score(g, preds[qid]) for g in golds))
        f1[qid] = max(f1_score(g, preds[qid], v2=True) for g in golds)
    return exact, f1, has_answer, missing


def best_null_threshold(predictions: Mapping[str, str], scores: Mapping[str, float],
                        null_odds: Mapping[str, float], has_answer: Mapping[str, bool], total: int):
    """Sweep of the v2.0 script: returns (best score in percent over `total` questions, its threshold).

    Start with every scored question answered "no answer" (score = #no-answer questions), then walk the
    questions by increasing odds (ties in `null_odds` order), switching each to its predicted answer:
    +score if it has an answer, −1 if it has none and the raw prediction string is non-empty, else 0. The best
    running score is kept with the odds where it was reached (strictly better only; starts at 0.0). Script
    quirks kept for comparable numbers: the initial threshold is 0.0 even if odds are negative, and a best
    reached inside a run of tied odds is reported although the threshold answers the whole run.
    """
    cur = sum(1 for qid in scores if not has_answer[qid])
    best, best_thresh = cur, 0.0
    for qid in sorted((q for q in null_odds if q in scores), key=lambda q: null_odds[q]):
        if has_answer[qid]:
            cur += scores[qid]
        elif predictions[qid]:
            cur -= 1
        if cur > best:
            best, best_thresh = cur, null_odds[qid]
    return 100.0 * best / total, best_thresh


def _checked_odds(null_odds, scored) -> dict[str, float]:
    odds = load_json(null_odds, "SQuAD null odds")
    if not isinstance(odds, Mapping):
        raise ValueError(f"null_odds must map question id -> number, got {type(odds).__name__}")
    out = {}
    for qid, v in odds.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
            raise ValueError(f"null_odds[{qid!r}] = {v!r} is not a number")
        out[qid] = float(v)
    absent = [q for q in scored if q not in out]
    if absent:
        raise ValueError(f"null_odds has no value for {len(absent)} predicted questions (first: {absent[:3]})")
    return out


def evaluate_v2(dataset, predictions, null_odds=None, null_threshold: float = 1.0,
                allow_missing: bool = False) -> dict:
    """Official SQuAD v2.0 metrics in percent.

    Keys: exact, f1, total, HasAns_{exact,f1,total}, NoAns_{exact,f1,total} (splits present only if
    non-empty) and, when `null_odds` is given, best_exact, best_exact_thresh, best_f1, best_f1_thresh.
    """
    preds = _checked_predictions(predictions)
    exact_raw, f1_raw, has_answer, missing = raw_scores_v2(dataset, preds)
    total = len(has_answer)
    if total == 0:
        raise ValueError("SQuAD dataset has no questions")
    if missing and not allow_missing:
        raise _missing_error(missing, total)
    odds = _checked_odds(null_odds, exact_raw) if null_odds is not None else None

    def thresholded(raw):
        out = {qid: 0.0 for qid in has_answer}  # missing predictions score 0
        for qid, s in raw.items():
            out[qid] = float(not has_answer[qid]) if odds is not None and odds[qid] > null_threshold else s
        return out

    exact, f1 = thresholded(exact_raw), thresholded(f1_raw)

    def split(qids):
        n = len(qids)
        return {"exact": 100.0 * sum(exact[q] for q in qids) / n, "f1": 100.0 * sum(f1[q] for q in qids) / n,
                "total": n}

    result = split(list(has_answer))
    for name, want in (("HasAns", True), ("NoAns", False)):
        qids = [q for q, h in has_answer.items() if h == want]
        if qids:
            result.update({f"{name}_{k}": v for k, v in split(qids).items()})
    if odds is not None:
        result["best_exact"], result["best_exact_thresh"] = best_null_threshold(
            preds, exact_raw, odds, has_answer, total)
        result["best_f1"], result["best_f1_thresh"] = best_null_threshold(preds, f1_raw, odds, has_answer, total)
    if missing:
        result["missing"] = len(missing)
    return result
