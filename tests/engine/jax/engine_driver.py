"""Run N MLM steps of one engine on fixed batches; run as a subprocess (the backend is per process):

    KERAS_BACKEND=tensorflow python engine_driver.py tf  OUT   # writes OUT/init.weights.h5 too
    KERAS_BACKEND=jax        python engine_driver.py jax OUT   # starts from OUT/init.weights.h5
    JAX_COORDINATOR_ADDRESS=localhost:PORT JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=i \
    KERAS_BACKEND=jax        python engine_driver.py jax OUT   # process i of 2, its half-batches

Writes OUT/<engine>.npz (jax<devices>[-process<i>of<n>].npz): per-step losses and the final weights by path. Dropout off, fp32, the
run's optimizer (AdamW, warmup + decay, layer-wise decay 0.8, clip 1.0, weight decay 0.01)."""

import os
import sys

import numpy as np

STEPS, BATCH, SEQ, PREDICT, VOCAB = 30, 8, 16, 3, 100


def batches():
    rng = np.random.default_rng(7)
    ids = rng.integers(5, VOCAB, (STEPS, BATCH, SEQ)).astype(np.int32)
    mask = np.ones((STEPS, BATCH, SEQ), np.int32)
    mask[:, :, -3:] = 0                          # some padding
    weights = np.ones((STEPS, BATCH, PREDICT), np.float32)
    weights[:, 0, -1] = 0                        # an unused prediction slot
    return {"input_ids": ids, "attention_mask": mask,
            "token_type_ids": np.zeros_like(ids),
            "masked_positions": rng.integers(1, SEQ - 3, (STEPS, BATCH, PREDICT)).astype(np.int32),
            "masked_ids": rng.integers(5, VOCAB, (STEPS, BATCH, PREDICT)).astype(np.int32),
            "masked_weights": weights}


def setup():
    import keras

    from funnel_tf.config import load_config
    from funnel_tf.engine import optimization
    from funnel_tf.tasks.pretraining import pretraining_task

    config = load_config("tiny").replace(
        vocab_size=VOCAB, d_model=32, d_inner=64, n_head=2, d_head=16, block_sizes=[1, 1],
        block_repeats=[1, 1], num_decoder_layers=1, hidden_dropout=0.0, attention_dropout=0.0,
        activation_dropout=0.0)
    keras.utils.set_random_seed(0)
    task = pretraining_task("mlm", config)
    schedule = optimization.WarmupLinearDecay(3e-3, 5, STEPS)

    def optimizer_fn(variables):
        return optimization.make_optimizer(variables, schedule, weight_decay=0.01,
                                           layer_decay=0.8)
    return task, optimizer_fn


def weights_of(task):
    return {"w/" + v.path: np.asarray(v.numpy() if hasattr(v, "numpy") else v.value)
            for v in task.trainable_variables}


def run_tf(out):
    import tensorflow as tf

    from funnel_tf.engine import loop

    task, optimizer_fn = setup()
    data = batches()
    tf.distribute.get_strategy()

    def dataset_fn(ctx):
        return tf.data.Dataset.from_tensor_slices(data)
    cfg = loop.LoopConfig(train_steps=STEPS, global_batch_size=BATCH, seq_len=SEQ,
                          model_dir=os.path.join(out, "tf_run"), steps_per_loop=1, log_every=1,
                          save_every=0, clip_norm=1.0, jit_compile=True, data_resume="restart",
                          handle_sigterm=False, handle_sigint=False)
    trainer = loop.Trainer(tf.distribute.get_strategy(), task, optimizer_fn, dataset_fn, cfg)
    task.model.save_weights(os.path.join(out, "init.weights.h5"))
    result = trainer.train()
    np.savez(os.path.join(out, "tf.npz"), loss=[h["loss"] for h in result.history],
             **weights_of(task))


def run_jax(out):
    from funnel_tf.engine.jax import distributed

    distributed.initialize_from_env()  # JAX_COORDINATOR_ADDRESS & co: one of several processes
    import jax

    from funnel_tf.engine.jax.step import TrainStep

    task, optimizer_fn = setup()
    task.build()
    init = os.path.join(out, "init.weights.h5")
    if os.path.exists(init):  # the TF run's initial weights
        task.model.load_weights(init)
    else:
        task.model.save_weights(init)
    optimizer = optimizer_fn(task.trainable_variables)
    step = TrainStep(task, optimizer, clip_norm=1.0, seed=0)
    state, data, losses = step.initial_state(), batches(), []
    n, i = jax.process_count(), jax.process_index()
    rows = BATCH // n  # this process's share of each global batch: rows [i*rows, (i+1)*rows)
    data = {k: v[:, i * rows:(i + 1) * rows] for k, v in data.items()}
    for lo in range(0, STEPS, 10):  # three host calls of 10 steps
        state, stats = step(state, {k: v[lo:lo + 10] for k, v in data.items()})
        losses += list(np.asarray(stats["loss"]))
    step.write_back(state)
    name = f"jax{jax.device_count()}" + (f"-process{i}of{n}" if n > 1 else "")
    np.savez(os.path.join(out, f"{name}.npz"), loss=losses, **weights_of(task))


if __name__ == "__main__":
    sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))
    {"tf": run_tf, "jax": run_jax}[sys.argv[1]](sys.argv[2])
