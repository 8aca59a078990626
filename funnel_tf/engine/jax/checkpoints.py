"""JAX-engine checkpoints: every model and optimizer variable as numpy, by path, in one .npz per
save (`checkpoints/jax-<step>.npz`), written through a temp file and a rename (tf.io.gfile:
gs:// works), the newest `keep` kept. Restoring takes the newest readable one, falls back past
unreadable ones with a warning, and refuses one whose variables differ from the run's."""

from __future__ import annotations

import io
import json
import os
import re
from typing import Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from funnel_tf.checkpoints.errors import CheckpointMismatchError

PATTERN = re.compile(r"^jax-(\d+)\.npz$")


def checkpoint_dir(model_dir: str) -> str:
    return os.path.join(model_dir, "checkpoints")


def list_checkpoints(model_dir: str) -> List[Tuple[int, str]]:
    """[(step, path)] of the JAX checkpoints in model_dir, newest first."""
    folder = checkpoint_dir(model_dir)
    if not tf.io.gfile.isdir(folder):
        return []
    found = [(int(m.group(1)), os.path.join(folder, name))
             for name in tf.io.gfile.listdir(folder) if (m := PATTERN.match(name.rstrip("/")))]
    return sorted(found, reverse=True)


def has_tf_checkpoint(model_dir: str) -> bool:
    return tf.train.latest_checkpoint(checkpoint_dir(model_dir)) is not None


class JaxCheckpoints:
    """Save / restore {group: [(path, array)]} state of a run (groups: trainable, non_trainable,
    optimizer) plus the step and skipped-step count; only the chief (`write`) writes."""

    def __init__(self, model_dir: str, keep: int = 5, write: bool = True):
        self.model_dir, self.keep, self.write = model_dir, int(keep), write
        self.latest: Optional[str] = None
        self.saved_step: Optional[int] = None

    def save(self, step: int, nonfinite: int, groups: Dict[str, List[Tuple[str, np.ndarray]]]):
        if not self.write:
            return None
        arrays, meta = {}, {"step": int(step), "nonfinite": int(nonfinite), "groups": {}}
        for group, items in groups.items():
            meta["groups"][group] = [[path, list(np.shape(a))] for path, a in items]
            for i, (_, a) in enumerate(items):
                arrays[f"{group}/{i}"] = np.asarray(a)
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        folder = checkpoint_dir(self.model_dir)
        tf.io.gfile.makedirs(folder)
        path = os.path.join(folder, f"jax-{int(step)}.npz")
        tmp = path + ".tmp"
        with tf.io.gfile.GFile(tmp, "wb") as f:
            f.write(buf.getvalue())
        tf.io.gfile.rename(tmp, path, overwrite=True)
        self.latest, self.saved_step = path, int(step)
        for _, old in list_checkpoints(self.model_dir)[self.keep:]:
            tf.io.gfile.remove(old)
        return path

    def restore_latest(self, expected: Dict[str, List[Tuple[str, tuple]]]):
        """(step, nonfinite, {group: [array]}) of the newest readable checkpoint, or None. A
        checkpoint with other variables (another config or objective) is a
        CheckpointMismatchError; an unreadable one is skipped with a warning."""
        for step, path in list_checkpoints(self.model_dir):
            try:
                with tf.io.gfile.GFile(path, "rb") as f:
                    data = np.load(io.BytesIO(f.read()))
                    meta = json.loads(bytes(data["meta"]).decode())
                    groups = {g: [data[f"{g}/{i}"] for i in range(len(items))]
                              for g, items in meta["groups"].items()}
            except Exception as e:  # noqa: BLE001 - truncated / corrupt file: try an older one
                logging.warning("checkpoint %s is unreadable (%s: %s); trying an older one",
                                path, type(e).__name__, str(e)[:200])
                continue
            for group, want in expected.items():
                got = [(p, tuple(s)) for p, s in meta["groups"].get(group, [])]
                want = [(p, tuple(s)) for p, s in want]
                if got != want:
                    diff = [f"{p}{list(s)}" for p, s in set(got) ^ set(want)][:3]
                    raise CheckpointMismatchError(
                        f"{path} holds other {group} variables than this run's ({len(got)} vs "
                        f"{len(want)}; e.g. {', '.join(diff)}): another config or objective; "
                        f"use a new --model_dir")
            self.latest, self.saved_step = path, int(meta["step"])
            return int(meta["step"]), int(meta["nonfinite"]), groups
        return None
