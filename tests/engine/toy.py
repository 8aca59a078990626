"""A stand-in objective and synthetic data for fast engine tests (seconds to compile, not a minute).

ToyMLM has the interface the engine uses from a Funnel MLM head: `model(inputs, masked_positions=,
training=)` -> {"logits": float32 [B, P, V]}, a `funnel` backbone with `embeddings` and `layer_0`,
and dropout so that RNG state matters for exact resume.
"""

import os
import shutil

import keras
import numpy as np
import tensorflow as tf

from funnel_tf.tasks.mlm import MaskedLMTask

V, L, P = 32, 8, 2
MASK = 3


class ToyBackbone(keras.Model):
    def __init__(self, dim=16, dropout=0.1, **kw):
        super().__init__(**kw)
        self.embeddings = keras.layers.Embedding(V, dim, name="embeddings")
        self.layer_0 = keras.layers.Dense(dim, activation="gelu", name="layer_0")
        self.norm = keras.layers.LayerNormalization(name="layer_norm")
        self.drop = keras.layers.Dropout(dropout, seed=7)
        self.embeddings.build((None, L))
        self.layer_0.build((None, L, dim))
        self.norm.build((None, L, dim))
        self.built = True

    def call(self, inputs, training=False):
        h = self.embeddings(inputs["input_ids"])
        h = self.norm(h + self.drop(self.layer_0(h), training=training))
        return {"last_hidden_state": h}


class ToyMLM(keras.Model):
    def __init__(self, dim=16, dropout=0.1, **kw):
        super().__init__(**kw)
        self.funnel = ToyBackbone(dim, dropout, name="funnel")
        self.head = keras.layers.Dense(V, dtype="float32", name="head")
        self.head.build((None, P, dim))
        self.built = True

    def call(self, inputs, masked_positions=None, training=False):
        h = self.funnel(inputs, training=training)["last_hidden_state"]
        if masked_positions is not None:
            h = tf.gather(h, masked_positions, batch_dims=1)
        return {"logits": tf.cast(self.head(h), tf.float32)}


class ToyObjective(MaskedLMTask):
    def __init__(self, dropout=0.1):
        super().__init__(config=None)
        self.dropout = dropout

    def build_model(self, config):
        return ToyMLM(dropout=self.dropout, name="masked_lm")


def examples(n=64, seed=0, nan_rows=()):
    """Learnable synthetic MLM data: half of the targets keep their token (the 10% 'unchanged'
    case), so a per-token model can learn; rows in `nan_rows` carry a NaN weight."""
    r = np.random.RandomState(seed)
    ids = r.randint(4, V, (n, L)).astype(np.int32)
    mask = np.ones((n, L), np.int32)
    mask[::4, -2:] = 0
    ids[mask == 0] = 0
    pos = np.stack([r.choice(np.arange(0, L - 2), P, replace=False) for _ in range(n)])
    pos = pos.astype(np.int32)
    orig = np.take_along_axis(ids, pos, 1)
    masked = ids.copy()
    np.put_along_axis(masked, pos[:, :1], MASK, 1)
    w = np.ones((n, P), np.float32)
    w[::3, -1] = 0.0
    for i in nan_rows:
        w[i, 0] = np.nan
    return dict(input_ids=masked, attention_mask=mask, token_type_ids=np.zeros_like(ids),
                masked_positions=pos, masked_ids=orig, masked_weights=w)


def dataset_fn(global_batch, data=None):
    data = examples() if data is None else data

    def fn(ctx):
        ds = tf.data.Dataset.from_tensor_slices(data).repeat()
        return ds.batch(ctx.get_per_replica_batch_size(global_batch), drop_remainder=True)
    return fn


def funnel_features(n=32, seq=16, vocab=64, seed=0, p=3):
    """Masked-LM features for the real tiny Funnel: [CLS]=1 then random ids, `p` positions masked
    with id 4; numpy dict of [n, seq] ids/mask/types and [n, p] positions/ids/weights."""
    r = np.random.RandomState(seed)
    ids = r.randint(5, vocab, (n, seq)).astype(np.int32)
    ids[:, 0] = 1
    pos = np.stack([np.sort(r.choice(np.arange(1, seq - 1), p, replace=False)) for _ in range(n)])
    orig = np.take_along_axis(ids, pos, 1)
    masked = ids.copy()
    np.put_along_axis(masked, pos, 4, 1)
    types = np.zeros_like(ids)
    types[:, 0] = 2
    return dict(input_ids=masked, attention_mask=np.ones_like(ids), token_type_ids=types,
                masked_positions=pos.astype(np.int32), masked_ids=orig,
                masked_weights=np.ones((n, p), np.float32))


def stopped_at(model_dir, dst, step: int) -> str:
    """dst as a run of model_dir stopped after its checkpoint at `step` leaves it: that
    checkpoint (written during model_dir's run, async ones included) and the `checkpoint` state
    file naming it, nothing newer. One uninterrupted run then serves as both the reference and
    the run to resume (a Trainer's trace and compile are what these tests pay for)."""
    src, out = os.path.join(str(model_dir), "checkpoints"), os.path.join(str(dst), "checkpoints")
    os.makedirs(out)
    files = tf.io.gfile.glob(os.path.join(src, f"ckpt-{step}.*"))
    assert any(f.endswith(".index") for f in files), os.listdir(src)
    for f in files:
        shutil.copy(f, out)
    with open(os.path.join(out, "checkpoint"), "w") as f:
        f.write(f'model_checkpoint_path: "ckpt-{step}"\n'
                f'all_model_checkpoint_paths: "ckpt-{step}"\n')
    return str(dst)
