"""Subprocess body for the SIGKILL resume test: trains a tiny real Funnel (MLM, dropout on) on
deterministic synthetic features, logging every step to <model_dir>/metrics.jsonl.

    python -m tests.engine.resume_driver MODEL_DIR TRAIN_STEPS SAVE_EVERY STRATEGY
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from funnel_tf.config import load_config  # noqa: E402
from funnel_tf.engine.loop import LoopConfig, Trainer  # noqa: E402
from funnel_tf.tasks.pretraining import pretraining_task  # noqa: E402
from funnel_tf.engine.optimization import WarmupLinearDecay, make_optimizer  # noqa: E402
from funnel_tf.engine.strategy import make_strategy  # noqa: E402
from tests.engine import toy  # noqa: E402

V, L, P, BATCH = 64, 16, 3, 8


def main(model_dir, steps, save_every, kind):
    if kind == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    keras.utils.set_random_seed(0)
    strategy = make_strategy(kind)
    cfg = load_config("tiny").replace(vocab_size=V, block_sizes=[1, 1], block_repeats=[1, 1],
                                      num_decoder_layers=1)
    data = toy.funnel_features(96, L, V, seed=0, p=P)

    def dataset_fn(ctx):
        ds = tf.data.Dataset.from_tensor_slices(data).shuffle(96, seed=3).repeat()
        return ds.batch(ctx.get_per_replica_batch_size(BATCH), drop_remainder=True)

    schedule = WarmupLinearDecay(1e-3, 5, steps)
    trainer = Trainer(strategy, pretraining_task("mlm", cfg),
                      lambda vs: make_optimizer(vs, schedule), dataset_fn,
                      LoopConfig(train_steps=steps, global_batch_size=BATCH, seq_len=L,
                                 model_dir=model_dir, steps_per_loop=1, log_every=1,
                                 save_every=save_every, jit_compile=False))
    trainer.train()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
