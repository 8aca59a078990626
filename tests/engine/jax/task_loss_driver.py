"""The tasks' keras.ops losses on both backends: a tiny MLM, ELECTRA, SST-2 (classification) and
STS-B (regression) task, their `local_normalizers` + `loss_and_stats` on fixed batches.

    KERAS_BACKEND=tensorflow: tests/engine/jax/test_task_losses.py calls `tf_side(folder)`
        in-process: eager TF values, and every model's weights saved to folder/<task>-<model>.h5
    KERAS_BACKEND=jax python task_loss_driver.py FOLDER: the same tasks load those weights and
        run the same methods under jax.jit (Keras layers in a StatelessScope, the JAX engine's
        way); writes FOLDER/jax.json ({task: {stat: value}}), with ELECTRA twice for one key.
"""

import json
import os
import sys

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
V, L, P, B = 64, 16, 4, 4


def config():
    from funnel_tf.config import load_config

    return load_config("tiny").replace(vocab_size=V, block_sizes=[1, 1], block_repeats=[1, 1],
                                       num_decoder_layers=1, hidden_dropout=0.0,
                                       attention_dropout=0.0)


def tasks():
    """{name: built task} (fresh weights: the JAX side loads the TF side's)."""
    import keras

    from funnel_tf.tasks.classification import GlueTask
    from funnel_tf.tasks.pretraining import pretraining_task

    keras.utils.set_random_seed(0)
    out = {"mlm": pretraining_task("mlm", config()),
           "electra": pretraining_task("electra", config(), disc_weight=50.0),
           "sst-2": GlueTask("sst-2").bind(config()), "sts-b": GlueTask("sts-b").bind(config())}
    for task in out.values():
        task.build()
    return out


def features(name):
    """Numpy batch of `name` (B rows of L tokens, one padded tail, one weight-0 slot / row)."""
    r = np.random.RandomState(3)
    ids = r.randint(5, V, (B, L)).astype(np.int32)
    mask = np.ones((B, L), np.int32)
    mask[1, -5:] = 0
    ids[mask == 0] = 0
    base = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    if name in ("mlm", "electra"):
        pos = np.stack([np.sort(r.choice(np.arange(1, L - 5), P, replace=False))
                        for _ in range(B)]).astype(np.int32)
        weights = np.ones((B, P), np.float32)
        weights[0, -1] = 0.0
        return dict(base, masked_positions=pos, masked_weights=weights,
                    masked_ids=r.randint(5, V, (B, P)).astype(np.int32))
    label = (r.rand(B) * 5).astype(np.float32) if name == "sts-b" else \
        r.randint(0, 2, B).astype(np.int32)
    return dict(base, label=label, example_weight=np.asarray([1, 1, 1, 0], np.float32))


def floats(loss, stats):
    return dict({k: float(np.asarray(v)) for k, v in stats.items()}, _loss=float(np.asarray(loss)))


def tf_side(folder):
    """{task: {stat: value}} on TensorFlow (eager), weights saved for the JAX side."""
    import tensorflow as tf

    out = {}
    for name, task in tasks().items():
        for key, model in task.models.items():
            model.save_weights(os.path.join(folder, f"{name}-{key}.weights.h5"))
        f = {k: tf.constant(v) for k, v in features(name).items()}
        loss, stats = task.loss_and_stats(f, task.local_normalizers(f), training=False,
                                          seed=tf.constant([1, 0]))
        out[name] = floats(loss, stats)
    return out


def jax_side(folder):
    import jax
    import keras

    from funnel_tf.engine.jax.step import task_variables

    out = {}
    for name, task in tasks().items():
        for key, model in task.models.items():
            model.load_weights(os.path.join(folder, f"{name}-{key}.weights.h5"))
        trainable, other = task_variables(task)

        def run(values, others, batch, key, task=task, trainable=trainable, other=other):
            mapping = list(zip(trainable, values)) + list(zip(other, others))
            with keras.StatelessScope(state_mapping=mapping):
                return task.loss_and_stats(batch, task.local_normalizers(batch),
                                           training=False, seed=key)
        step = jax.jit(run)
        args = ([v.value for v in trainable], [v.value for v in other], features(name))
        out[name] = floats(*step(*args, jax.random.key(1)))
        if name == "electra":  # the same key samples the same tokens; another key others
            out["electra_same_key"] = floats(*step(*args, jax.random.key(1)))
            out["electra_other_key"] = floats(*step(*args, jax.random.key(2)))
    with open(os.path.join(folder, "jax.json"), "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    jax_side(sys.argv[1])
