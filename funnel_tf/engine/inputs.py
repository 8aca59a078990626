"""The loop's input: a task's dataset (`Task.build_inputs` of a run's input spec) as the loop's
dataset_fn, and a distributed iterator over it, started at a resume step by replay when the
iterator state itself cannot be checkpointed (distributed iterators, TF 2.19-2.21)."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Callable

import tensorflow as tf


def task_dataset_fn(task, spec) -> Callable:
    """`ctx -> task.build_inputs(spec, ctx)`, the dataset_fn `loop.Trainer` takes. A spec with a
    `start_batch` (pretraining's) gives a dataset_fn that takes one too, which starts the task's
    input at that batch of the pipeline (see `distributed_iterator`)."""
    if "start_batch" in {f.name for f in dataclasses.fields(spec)}:
        def dataset_fn(ctx: tf.distribute.InputContext, start_batch: int = 0) -> tf.data.Dataset:
            if start_batch:
                return task.build_inputs(dataclasses.replace(
                    spec, start_batch=spec.start_batch + start_batch), ctx)
            return task.build_inputs(spec, ctx)
    else:
        def dataset_fn(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
            return task.build_inputs(spec, ctx)
    return dataset_fn


def distributed_iterator(strategy: tf.distribute.Strategy, dataset_fn: Callable,
                         num_replicas: int, skip_batches: int = 0):
    """Iterator over the input from step `skip_batches` on. A dataset_fn with a `start_batch`
    parameter starts there itself (pretraining's skips serialized records and jumps whole
    epochs: O(1) in the step); any other is built from 0 and `skip`s its batches."""
    try:
        starts = "start_batch" in inspect.signature(dataset_fn).parameters
    except (TypeError, ValueError):
        starts = False

    def fn(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
        # The per-host pipeline feeds its local replicas one batch each per step.
        skip = skip_batches * (num_replicas // max(ctx.num_input_pipelines, 1))
        if skip and starts:
            return dataset_fn(ctx, start_batch=skip)
        ds = dataset_fn(ctx)
        return ds.skip(skip) if skip else ds
    return iter(strategy.distribute_datasets_from_function(fn))
