"""Subprocess body for the multi-worker preemption tests: one worker of a
MultiWorkerMirroredStrategy job (TF_CONFIG) training the toy objective, optionally in a process
where TF believes it runs on GCP (a GCE CPU VM: TF's PreemptionCheckpointHandler does nothing
there, as on a Cloud TPU VM). Writes {"step", "start_step", "preempted"} to OUT_JSON and exits 75
when preempted (as pretrain.py does).

    python -m tests.engine.preemption_driver MODEL_DIR TRAIN_STEPS OUT_JSON [--gcp]
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


def pretend_gcp() -> None:
    """Make TF's platform detection answer "on GCP" (what a Cloud TPU VM / GCE VM answers)."""
    from tensorflow.python.distribute.failure_handling import failure_handling_util

    failure_handling_util.on_gcp = lambda: True


def main(model_dir: str, steps: int, out: str, gcp: bool) -> int:
    if gcp:
        pretend_gcp()
    from absl import logging

    from funnel_tf.engine.strategy import make_strategy

    strategy = make_strategy("multi_worker")  # before TF runs any op
    logging.set_verbosity(logging.INFO)
    return train(strategy, model_dir, steps, out)


def train(strategy, model_dir: str, steps: int, out: str) -> int:
    """Train the toy objective under `strategy`; write the result to `out`; the exit code."""
    import keras

    from funnel_tf.engine.loop import LoopConfig, Trainer
    from funnel_tf.engine.optimization import make_optimizer
    from tests.engine import toy

    keras.utils.set_random_seed(0)
    trainer = Trainer(strategy, toy.ToyObjective(dropout=0.0),
                      lambda vs: make_optimizer(vs, 1e-3), toy.dataset_fn(8),
                      LoopConfig(train_steps=steps, global_batch_size=8, seq_len=toy.L,
                                 model_dir=model_dir, steps_per_loop=1, log_every=5,
                                 save_every=0, jit_compile=False))
    result = trainer.train()
    with open(out, "w") as f:
        json.dump({"step": result.step, "start_step": result.start_step,
                   "preempted": result.preempted}, f)
    return 75 if result.preempted else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], "--gcp" in sys.argv[4:]))
