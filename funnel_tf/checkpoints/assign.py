"""Copy named checkpoint arrays into model variables, all-or-nothing.

Shared by every importer: it checks the whole name set and every shape first, raises one
CheckpointError listing all problems, and only then assigns.
"""

import dataclasses
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence

import numpy as np
from absl import logging

from funnel_tf.checkpoints.errors import HEAD, CheckpointError, matches_any


class Target(NamedTuple):
    """One model variable and how a checkpoint array becomes its value."""
    name: str  # the name in the checkpoint's own naming scheme
    variable: object  # keras.Variable
    to_keras: Callable[[np.ndarray], np.ndarray]
    is_head: bool = False  # belongs to a task head (matched by allow_missing=["head"])


@dataclasses.dataclass
class LoadReport:
    """What a load did: every checkpoint tensor is either loaded or listed in `skipped`."""
    source: str
    format: str
    model_class: str
    loaded: List[str] = dataclasses.field(default_factory=list)
    missing_allowed: List[str] = dataclasses.field(default_factory=list)  # kept their fresh init
    skipped: List[str] = dataclasses.field(default_factory=list)  # checkpoint parts the model has no place for
    cast: Dict[str, str] = dataclasses.field(default_factory=dict)  # name -> source dtype, when not float32

    def summary(self) -> str:
        s = (f"{self.source} ({self.format}) -> {self.model_class}: loaded {len(self.loaded)} tensors")
        if self.missing_allowed:
            s += f"; {len(self.missing_allowed)} left at init (allowed missing)"
        if self.skipped:
            s += f"; skipped {len(self.skipped)} unused checkpoint tensors"
        if self.cast:
            s += f"; cast {len(self.cast)} tensors to float32"
        return s


def _expected_source_shape(target: Target, to_source: Optional[Callable]) -> tuple:
    if to_source is None:
        return tuple(target.variable.shape)
    return tuple(to_source(np.zeros(tuple(target.variable.shape), np.float32)).shape)


def assign_arrays(targets: Sequence[Target], arrays: Dict[str, np.ndarray], *, source: str, fmt: str,
                  model_class: str, allow_missing: Iterable[str] = (),
                  skippable: Callable[[str], bool] = lambda name: False,
                  to_source: Optional[Dict[str, Callable]] = None, hint: Optional[str] = None) -> LoadReport:
    """Validate `arrays` against `targets`, then assign every target variable.

    allow_missing: fnmatch patterns over target names, or "head" for all head tensors; those keep
    their initial values. skippable(name): checkpoint tensors the chosen model class deliberately
    does not hold (another head, the decoder of a full model loaded as a base model); they are
    reported in `LoadReport.skipped` and logged. Anything else unmatched raises CheckpointError.
    to_source: optional name -> inverse transform, only used to state expected shapes in errors.
    """
    allow_missing = list(allow_missing)
    report = LoadReport(source=source, format=fmt, model_class=model_class)
    names = {t.name for t in targets}
    missing, mismatched, converted = [], [], []
    for t in targets:
        if t.name not in arrays:
            allowed = (HEAD in allow_missing and t.is_head) or matches_any(t.name, allow_missing)
            if allowed:
                report.missing_allowed.append(t.name)
            else:
                missing.append(t.name)
            continue
        arr = np.asarray(arrays[t.name])
        try:
            value = np.asarray(t.to_keras(arr))
        except ValueError:  # a reshape that cannot work: the shape is wrong
            value = None
        if value is None or tuple(value.shape) != tuple(t.variable.shape):
            inverse = (to_source or {}).get(t.name)
            mismatched.append((t.name, tuple(arr.shape), _expected_source_shape(t, inverse)))
            continue
        if arr.dtype != np.float32:
            report.cast[t.name] = str(arr.dtype)
        converted.append((t, value))
    unexpected, skipped = [], []
    for name in arrays:
        if name in names:
            continue
        (skipped if skippable(name) else unexpected).append(name)
    if missing or unexpected or mismatched:
        if missing and not hint and any(t.is_head for t in targets if t.name in missing):
            hint = ('  (a checkpoint without this head: pass allow_missing=["head"] / --allow_missing head '
                    "to start the head from its initialisation)")
        raise CheckpointError(f"checkpoint does not match {model_class}", source=source, missing=missing,
                              unexpected=unexpected, mismatched=mismatched, hint=hint)
    for t, value in converted:
        t.variable.assign(value.astype(t.variable.dtype))
        report.loaded.append(t.name)
    report.skipped = sorted(skipped)
    if skipped:
        logging.info("%s: skipped %d checkpoint tensors not used by %s: %s", source, len(skipped), model_class,
                     ", ".join(report.skipped[:10]) + (" ..." if len(skipped) > 10 else ""))
    if report.missing_allowed:
        logging.warning("%s: %d tensors not in the checkpoint keep their initial values: %s", source,
                        len(report.missing_allowed), ", ".join(report.missing_allowed[:10]))
    return report
