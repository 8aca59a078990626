"""Progress a person can read: throughput, ETA and metrics as log lines, TensorBoard scalars and a
JSON-lines file (`<model_dir>/metrics.jsonl`, one record per log window, easy to plot or test)."""

from __future__ import annotations

import json
import os
import time
from typing import Dict, Mapping, Optional, Sequence

import tensorflow as tf
from absl import logging
from tensorflow.core.framework import summary_pb2

from funnel_tf import json_text

# TensorBoard's scalar-plugin metadata: `tf.summary.scalar` needs the tensorboard package, this
# writes the same event records with TensorFlow alone.
_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))


def write_scalar(name: str, value: float, step: int) -> None:
    """A TensorBoard scalar in the default summary writer (no tensorboard import needed)."""
    tf.summary.write(name, tf.constant(value, tf.float32), step=step, metadata=_SCALAR_METADATA)


def evaluation_plan(marks: Sequence[int], shown: int = 6) -> str:
    """When a run evaluates, for its log: 'evaluating at step 100, 200 and at the end' (a long
    list is cut: 'at steps 100, 200, 300, ..., 9900 (99 times) and at the end')."""
    marks = sorted(int(m) for m in marks)
    if not marks:
        return "evaluating at the end"
    word = "step" if len(marks) == 1 else "steps"
    if len(marks) <= shown:
        return f"evaluating at {word} {', '.join(map(str, marks))} and at the end"
    head = ", ".join(map(str, marks[:shown - 1]))
    return f"evaluating at steps {head}, ..., {marks[-1]} ({len(marks)} times) and at the end"


def format_duration(seconds: float) -> str:
    """3725 -> '1h02m05s'; inf/NaN -> '?'."""
    if seconds != seconds or seconds == float("inf"):
        return "?"
    seconds = int(round(max(seconds, 0)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{h}h{m:02d}m{s:02d}s"
    if m:
        return f"{m}m{s:02d}s"
    return f"{s}s"


def _human(x: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.2f}{unit}"
    return f"{x:.1f}"


class ProgressLogger:
    """Turns (step, metric values, time) into throughput, ETA, log lines and summaries.

    Call `start(step)` before training, `mark_compiled()` once the first host call has returned
    (so compilation time is reported apart and not counted in the throughput), and
    `log(step, metrics, learning_rate)` at every log boundary.
    """

    def __init__(self, total_steps: int, global_batch_size: int, seq_len: int,
                 model_dir: Optional[str] = None, write: bool = True):
        self.total_steps = int(total_steps)
        self.global_batch_size = int(global_batch_size)
        self.seq_len = int(seq_len)
        self.model_dir = model_dir
        self.write = write and model_dir is not None
        self._writer = None
        self._jsonl = None
        if self.write:
            tf.io.gfile.makedirs(model_dir)
            self._writer = tf.summary.create_file_writer(os.path.join(model_dir, "train"))
            self.jsonl_path = os.path.join(model_dir, "metrics.jsonl")
        self._t0 = self._window_start = None
        self._window_step = 0
        self.compile_seconds: Optional[float] = None

    def start(self, step: int) -> None:
        self._t0 = self._window_start = time.perf_counter()
        self._window_step = int(step)

    def mark_compiled(self, step: int) -> None:
        """The first host call (tracing + XLA compilation + its steps) finished at `step`."""
        now = time.perf_counter()
        self.compile_seconds = now - self._t0
        logging.info("first loop (trace + compile + %d step(s)) took %s",
                     step - self._window_step, format_duration(self.compile_seconds))
        self._window_start, self._window_step = now, int(step)

    def log(self, step: int, metrics: Mapping[str, float], learning_rate: float,
            extra: Optional[Mapping[str, float]] = None) -> Dict[str, float]:
        """Emit one record for the window ending at `step`; returns it."""
        now = time.perf_counter()
        steps = int(step) - self._window_step
        dt = now - self._window_start
        rate = steps / dt if steps > 0 and dt > 0 else float("nan")
        record = {"step": int(step), **{k: float(v) for k, v in metrics.items()},
                  "learning_rate": float(learning_rate), "steps_per_sec": rate,
                  "examples_per_sec": rate * self.global_batch_size,
                  "tokens_per_sec": rate * self.global_batch_size * self.seq_len,
                  "elapsed_sec": now - self._t0}
        if extra:
            record.update({k: float(v) for k, v in extra.items()})
        eta = (self.total_steps - step) / rate if rate == rate and rate > 0 else float("nan")
        record["eta_sec"] = eta
        logging.info("%s", self.format(record))
        if self.write:
            with self._writer.as_default():
                for k, v in record.items():
                    if k != "step" and v == v:
                        write_scalar(k, v, int(step))
            self._writer.flush()
            with tf.io.gfile.GFile(self.jsonl_path, "a") as f:
                f.write(json_text.dumps(record) + "\n")  # NaN (no ETA yet) -> null
        self._window_start, self._window_step = now, int(step)
        return record

    def format(self, r: Mapping[str, float]) -> str:
        pct = 100.0 * r["step"] / max(self.total_steps, 1)
        skip = {"step", "learning_rate", "steps_per_sec", "examples_per_sec", "tokens_per_sec",
                "elapsed_sec", "eta_sec"}
        metrics = " | ".join(f"{k} {v:.4f}" for k, v in r.items() if k not in skip)
        rate = r["steps_per_sec"]
        speed = (f"{rate:.2f} steps/s, {_human(r['examples_per_sec'])} ex/s, "
                 f"{_human(r['tokens_per_sec'])} tok/s" if rate == rate else "speed n/a (compile)")
        return (f"step {r['step']}/{self.total_steps} ({pct:.1f}%) | {metrics} | "
                f"lr {r['learning_rate']:.3g} | {speed} | ETA {format_duration(r['eta_sec'])}")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def read_metrics(model_dir: str):
    """Records of `<model_dir>/metrics.jsonl` in order (a resumed run repeats some steps; the last
    record for a step is the one from the run that continued)."""
    path = os.path.join(model_dir, "metrics.jsonl")
    if not tf.io.gfile.exists(path):
        return []
    with tf.io.gfile.GFile(path) as f:
        return [json.loads(line) for line in f if line.strip()]
