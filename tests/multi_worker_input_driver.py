"""Worker body for the real two-worker tests: builds the MultiWorkerMirroredStrategy from TF_CONFIG,
lets it hand the MLM task's input (`build_inputs`) its real InputContext, and writes what this
worker's pipeline reads in one epoch (as example keys) to OUT_DIR/worker<task_id>.json. Given
MODEL_DIR and TRAIN_STEPS, the worker then trains the toy objective in a process where TF
believes it runs on GCP (tests/engine/preemption_driver.py), writes its result to
OUT_DIR/result<task_id>.json and exits 75 when preempted: one cluster (two TF processes) serves
the sharding test and the preemption test.

    python -m tests.multi_worker_input_driver RECORDS_GLOB VOCAB OUT_DIR [MODEL_DIR TRAIN_STEPS]
"""

import dataclasses
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

SEQ_LEN, GLOBAL_BATCH = 64, 8


def example_key(input_ids) -> str:
    """One example's identity: its token ids (the records hold no duplicates; the test checks)."""
    return ",".join(str(int(t)) for t in np.asarray(input_ids).reshape(-1))


def unmasked_input(records: str, vocab: str):
    """The loop's dataset_fn of the pretraining input pretrain.py builds (the task's
    `build_inputs` of its spec), with masking replaced by the identity so the batches carry the
    records' own token ids (masking does not decide which examples are read)."""
    from funnel_tf.config import load_config
    from funnel_tf.engine.inputs import task_dataset_fn
    from funnel_tf.pretraining import inputs
    from funnel_tf.tasks.mlm import MaskedLMTask

    data = inputs.build_pretraining_input([records], SEQ_LEN, GLOBAL_BATCH, load_config("tiny"),
                                          vocab=vocab, can_write=False)
    spec = dataclasses.replace(data.spec, masker=lambda batch: batch, deterministic=True)
    return task_dataset_fn(MaskedLMTask(), spec)


def first_epoch(dataset: tf.data.Dataset, limit: int = 100_000) -> list:
    """Example keys of a repeating, per-epoch-shuffled stream up to its first repeat (one epoch)."""
    seen, order = set(), []
    for batch in dataset:
        for row in batch["input_ids"].numpy():
            key = example_key(row)
            if key in seen:
                return order
            seen.add(key)
            order.append(key)
            if len(order) > limit:
                raise AssertionError(f"no repeat within {limit} examples")
    return order


def main(records: str, vocab: str, out_dir: str, model_dir: str = None, steps: str = None) -> int:
    from funnel_tf.engine.strategy import make_strategy, strategy_info
    from tests.engine import preemption_driver

    if model_dir is not None:
        preemption_driver.pretend_gcp()
    strategy = make_strategy("multi_worker")
    info = strategy_info(strategy)
    read = unmasked_input(records, vocab)
    contexts = []

    def dataset_fn(ctx):
        contexts.append(ctx)
        return read(ctx)

    distributed = iter(strategy.distribute_datasets_from_function(dataset_fn))
    first = strategy.experimental_local_results(next(distributed))[0]["input_ids"].numpy()
    (ctx,) = contexts
    epoch = first_epoch(read(ctx))
    out = dict(task_id=strategy.cluster_resolver.task_id, is_chief=info.is_chief,
               num_workers=info.num_workers, num_replicas=info.num_replicas,
               num_input_pipelines=ctx.num_input_pipelines,
               input_pipeline_id=ctx.input_pipeline_id,
               per_replica_batch=ctx.get_per_replica_batch_size(GLOBAL_BATCH),
               first_batch=[example_key(r) for r in first], epoch=epoch)
    with open(os.path.join(out_dir, f"worker{out['task_id']}.json"), "w") as f:
        json.dump(out, f)
    if model_dir is None:
        return 0
    from absl import logging

    logging.set_verbosity(logging.INFO)
    return preemption_driver.train(strategy, model_dir, int(steps),
                                   os.path.join(out_dir, f"result{out['task_id']}.json"))


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:6]))
