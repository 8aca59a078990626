"""Prediction under a strategy: `task.predict` over an EvalData's rows (read through
`task.build_inputs`), gathered back to the host in dataset order (the runner's evaluation and
--do_predict both go through it)."""

from __future__ import annotations

import collections
from typing import Dict, List

import numpy as np
import tensorflow as tf

from funnel_tf import xla
from funnel_tf.engine.strategy import strategy_info
from funnel_tf.tasks.base import EvalData, Task
from funnel_tf.tasks.inputs import FinetuningInputSpec


class Predictor:
    """Runs `task.predict` over an EvalData under the strategy; returns numpy rows in dataset
    order (padding rows included; tasks drop them by example_index)."""

    def __init__(self, strategy: tf.distribute.Strategy, task: Task, model,
                 jit_compile: bool = True):
        self.strategy, self.task = strategy, task
        kind = strategy_info(strategy).kind

        def replica_fn(features):
            out = dict(task.predict(model, features))
            out["_row"] = features["_row"]
            return out

        if kind != "tpu" and xla.effective_jit_compile(jit_compile, "prediction"):
            replica_fn = tf.function(replica_fn, jit_compile=True)

        @tf.function
        def step(batch):
            out = strategy.run(replica_fn, args=(batch,))
            return {k: strategy.gather(v, axis=0) for k, v in out.items()}

        self._step = step

    @staticmethod
    def input_dataset(task: Task, data: EvalData, global_batch: int) -> tf.data.Dataset:
        """The global batches handed to `experimental_distribute_dataset` (rows numbered)."""
        rows = task.build_inputs(FinetuningInputSpec(training=False, prepared=data))
        ds = rows.enumerate().map(
            lambda i, f: dict(f, _row=tf.cast(i, tf.int32)))
        ds = ds.batch(global_batch, drop_remainder=True)
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = \
            tf.data.experimental.AutoShardPolicy.DATA
        return ds.with_options(options)

    def __call__(self, data: EvalData, global_batch: int) -> Dict[str, np.ndarray]:
        dist = self.strategy.experimental_distribute_dataset(
            self.input_dataset(self.task, data, global_batch))
        parts: Dict[str, List[np.ndarray]] = collections.defaultdict(list)
        for batch in dist:
            for k, v in self._step(batch).items():
                parts[k].append(v.numpy())
        if not parts:
            raise RuntimeError("evaluation dataset produced no batch")
        arrays = {k: np.concatenate(v, axis=0) for k, v in parts.items()}
        order = np.argsort(arrays.pop("_row"), kind="stable")
        out = {k: v[order] for k, v in arrays.items()}
        n = len(order)
        if n < data.num_rows:
            raise RuntimeError(f"evaluation produced {n} rows for {data.num_rows} inputs")
        return out
