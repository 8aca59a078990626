"""What FunnelTextClassifier's fit / evaluate / predict accept, checked before Keras compiles
anything: a wrong argument is one ClassifierError (a ValueError; ClassifierTypeError also a
TypeError) naming the argument and what was expected, not a graph trace after a 30-60 s compile.

Texts: a list / tuple / 1-D numpy array / 1-D string tensor of strings [N]; pairs: a 2-tuple
(texts, pair_texts) of such lists; features: a dict with int `input_ids` [N, L]; or a batched
tf.data.Dataset of those (with labels for fit/evaluate: elements (x, y) or (x, y, sample_weight)).
Labels: class ids 0..C-1 as ints (C = num_classes > 1), finite numbers for regression (C = 1).
"""

from __future__ import annotations

from typing import List, Optional, Tuple, Union

import numpy as np
import tensorflow as tf

from funnel_tf.errors import UserError

Texts = Tuple[List[Union[str, bytes]], ...]  # (texts,) or (texts, pair_texts)


class ClassifierError(UserError, ValueError):
    """A classifier that cannot be built, fed or saved as asked; says what to do."""


class ClassifierTypeError(ClassifierError, TypeError):
    """An argument of the wrong type (numbers where texts go, floats or strings as class ids)."""


def is_features(x) -> bool:
    return isinstance(x, dict) and "input_ids" in x


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _text_list(x, name: str) -> list:
    """One list of texts [N] from a list / tuple / 1-D array / 1-D string tensor."""
    if tf.is_tensor(x):
        if x.dtype != tf.string:
            raise ClassifierTypeError(f"{name}: expected texts (strings), got a {x.dtype.name} tensor; the "
                                      f"classifier tokenizes raw text itself (or pass a features dict)")
        x = x.numpy() if hasattr(x, "numpy") else x
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "USO":
            raise ClassifierTypeError(f"{name}: expected texts (strings), got a numpy array of {x.dtype}")
        if x.ndim != 1:
            raise ClassifierError(f"{name}: expected a 1-D list of texts [N], got an array of shape {list(x.shape)}"
                                  + ("; for text pairs pass a tuple (texts, pair_texts)" if x.ndim == 2 else ""))
        x = x.tolist()
    if not isinstance(x, (list, tuple)):
        raise ClassifierTypeError(f"{name}: expected a list of texts, got {type(x).__name__}")
    for i, t in enumerate(x):
        if not isinstance(t, (str, bytes)):
            what = "None" if t is None else f"{type(t).__name__} {_short(t)}"
            raise ClassifierTypeError(f"{name}[{i}] is {what}: every text must be a string")
    return list(x)


def as_texts(x, name: str = "x", pair: bool = False) -> Texts:
    """(texts,) or (texts, pair_texts) as lists of strings of one length, from raw-text input.
    A pair classifier (pair=True) needs pairs; single texts for it would be a silent wrong answer."""
    if isinstance(x, (str, bytes)):
        raise ClassifierError(f"{name}: takes a list of texts; wrap the one string: [text]")
    if x is None:
        raise ClassifierTypeError(f"{name}: expected a list of texts, got None")
    is_pair = isinstance(x, (list, tuple)) and len(x) == 2 and all(
        isinstance(part, (list, tuple, np.ndarray)) or tf.is_tensor(part) for part in x)
    if is_pair:
        a, b = _text_list(x[0], f"{name}[0] (texts)"), _text_list(x[1], f"{name}[1] (pair_texts)")
        if len(a) != len(b):
            raise ClassifierError(f"{name}: {len(a)} texts but {len(b)} pair_texts; pairs need one each")
        return a, b
    texts = _text_list(x, name)
    if pair:
        raise ClassifierError(f"{name}: this classifier reads text pairs (pair=True): pass a tuple "
                              f"(texts, pair_texts)")
    return (texts,)


def check_labels(y, num_classes: int, n: Optional[int] = None, name: str = "y") -> np.ndarray:
    """Labels [N] as int32 class ids in [0, num_classes) or, for regression (num_classes == 1),
    finite float32 scores; ClassifierError naming the first bad one."""
    if y is None:
        raise ClassifierError(f"{name}: labels are needed (one per text)")
    if tf.is_tensor(y):
        y = y.numpy()
    try:
        labels = np.asarray(y)
    except ValueError as e:  # ragged nesting
        raise ClassifierError(f"{name}: expected one label per text, got {type(y).__name__} ({e})") from None
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise ClassifierError(f"{name}: expected one label per text (shape [N]), got shape {list(labels.shape)}")
    if n is not None and len(labels) != n:
        raise ClassifierError(f"{name}: {len(labels)} labels for {n} texts; give one label per text")
    regression = num_classes == 1
    kind = labels.dtype.kind
    if kind not in "biuf" or (kind == "f" and not regression):
        if kind == "O":  # mixed values: name the first that is not a number
            index, value = next(((i, v) for i, v in enumerate(labels.tolist())
                                 if not isinstance(v, (int, float, np.number)) or isinstance(v, bool)), (0, None))
            got = f"{'None' if value is None else type(value).__name__ + ' ' + _short(value)} at index {index}"
        else:
            got = f"{labels.dtype} labels (e.g. {_short(labels[0].item()) if len(labels) else 'none'})"
        if regression:
            raise ClassifierTypeError(f"{name}: a regression classifier (num_classes=1) takes numbers, got {got}")
        hint = "; map label names to ids (label_names.index(name))" if kind in "USO" else \
            "; for real-valued targets build the classifier with num_classes=1 (regression)" if kind == "f" else ""
        raise ClassifierTypeError(f"{name}: a classifier with {num_classes} classes takes integer class ids "
                                  f"0..{num_classes - 1}, got {got}{hint}")
    if regression:
        labels = labels.astype(np.float32)
        bad = np.flatnonzero(~np.isfinite(labels))
        if bad.size:
            raise ClassifierError(f"{name}: label {labels[bad[0]]} at index {bad[0]} is not finite "
                                  f"({bad.size} such); training on it would poison the weights")
        return labels
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        raise ClassifierError(f"{name}: label {labels[bad[0]]} at index {bad[0]} is out of range for "
                              f"{num_classes} classes (0..{num_classes - 1})")
    return labels.astype(np.int32)


def check_features(x, name: str = "x") -> None:
    """A features dict: int input_ids [N, L] (the model checks the rest when called)."""
    ids = x["input_ids"]
    dtype = tf.as_dtype(ids.dtype) if hasattr(ids, "dtype") else tf.as_dtype(np.asarray(ids).dtype)
    shape = tf.TensorShape(ids.shape if hasattr(ids, "shape") else np.shape(ids))
    if not dtype.is_integer or shape.rank != 2:
        raise ClassifierTypeError(f"{name}['input_ids']: expected int token ids [N, seq_len], got {dtype.name} "
                                  f"of shape {shape}")


def _x_spec_kind(spec, name: str, pair: bool) -> str:
    """'texts', 'pairs' or 'features' for the x part of a dataset's element_spec."""
    def strings(s):
        return isinstance(s, tf.TensorSpec) and s.dtype == tf.string

    if isinstance(spec, dict):
        ids = spec.get("input_ids")
        if not isinstance(ids, tf.TensorSpec) or not ids.dtype.is_integer or ids.shape.rank != 2:
            raise ClassifierTypeError(f"{name}: a dict of features needs int input_ids batches [N, seq_len], "
                                      f"got {ids}")
        return "features"
    if isinstance(spec, tuple) and len(spec) == 2 and all(strings(s) for s in spec):
        kinds = [s.shape.rank for s in spec]
        if kinds != [1, 1]:
            raise ClassifierError(f"{name}: text pairs must be batches of strings [N]; got shapes "
                                  f"{[s.shape for s in spec]} (call .batch(n) on the dataset)")
        return "pairs"
    if strings(spec):
        if spec.shape.rank == 0:
            raise ClassifierError(f"{name}: the dataset is not batched (its texts are single strings); "
                                  f"call .batch(32) on it")
        if spec.shape.rank != 1:
            raise ClassifierError(f"{name}: expected batches of texts [N], got string batches of shape {spec.shape}")
        if pair:
            raise ClassifierError(f"{name}: this classifier reads text pairs (pair=True): give "
                                  f"((texts, pair_texts), labels) batches")
        return "texts"
    raise ClassifierTypeError(f"{name}: expected batches of texts (tf.string [N]), text pairs or a features "
                              f"dict, got {spec}")


def check_dataset(ds: tf.data.Dataset, num_classes: int, labelled: bool, pair: bool = False,
                  name: str = "x") -> None:
    """The element_spec of a dataset for fit/evaluate (labelled) or predict, and for labelled ones
    the first batch's labels (range, type, finiteness): one batch is read, nothing is compiled."""
    spec = ds.element_spec
    if labelled:
        if not isinstance(spec, tuple) or len(spec) not in (2, 3):
            raise ClassifierError(f"{name}: fit/evaluate take a dataset of (texts, labels) batches (or (texts, "
                                  f"labels, sample_weights)); its elements are {spec}")
        _x_spec_kind(spec[0], name, pair)
        y_spec = spec[1]
        if not isinstance(y_spec, tf.TensorSpec):
            raise ClassifierTypeError(f"{name}: labels must be one tensor per batch, got {y_spec}")
        regression = num_classes == 1
        if y_spec.dtype == tf.string or not (y_spec.dtype.is_integer or y_spec.dtype.is_floating) or \
                (y_spec.dtype.is_floating and not regression):
            raise ClassifierTypeError(
                f"{name}: labels are {y_spec.dtype.name}, but a "
                + ("regression classifier takes numbers" if regression else
                   f"classifier with {num_classes} classes takes integer class ids 0..{num_classes - 1}"
                   + ("; for real-valued targets build it with num_classes=1" if y_spec.dtype.is_floating
                      else "")))
        for first in ds.take(1):  # peek: one batch through the pipeline, no model involved
            check_labels(first[1], num_classes, name=f"{name} (labels of the first batch)")
        return
    if isinstance(spec, tuple) and len(spec) == 1:
        _x_spec_kind(spec[0], name, pair)
    elif isinstance(spec, tuple) and len(spec) in (2, 3) and _is_string_spec(spec[0]) and _is_string_spec(spec[1]):
        raise ClassifierError(f"{name}: a dataset of 2-tuples of strings is read by Keras as (texts, labels); "
                              f"for text pairs make its elements ((texts, pair_texts),)")
    elif isinstance(spec, tuple) and len(spec) in (2, 3):
        _x_spec_kind(spec[0], name, pair)  # (x, y[, w]): predict ignores the labels
    else:
        _x_spec_kind(spec, name, pair)


def _is_string_spec(spec) -> bool:
    return isinstance(spec, tf.TensorSpec) and spec.dtype == tf.string


__all__ = ["ClassifierError", "ClassifierTypeError", "as_texts", "check_labels", "check_features",
           "check_dataset", "is_features"]

