"""bf16 weight copies: the forward through them and the gradients they give equal the plain
mixed_bfloat16 casts, and the copies follow their float32 masters."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from funnel_tf.config import FunnelConfig
from funnel_tf.modeling.tf_kernels.compute_weights import compute_weight, using_copies
from funnel_tf.modeling.heads import FunnelForMaskedLM
from funnel_tf.engine.weight_copies import MIN_SIZE, WeightCopies, maybe_weight_copies

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs")


@pytest.fixture
def bf16_policy():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    yield
    keras.mixed_precision.set_global_policy("float32")


def _tiny_mlm(**overrides):
    """The tiny MLM with one encoder layer (one block: pooling reads no weight) and one decoder
    layer: every kind of weight, a quarter of the layers to build and trace."""
    with open(os.path.join(CONFIGS, "tiny.json")) as f:
        cfg = FunnelConfig.from_dict({**json.load(f), "vocab_size": 1100, "hidden_dropout": 0.0,
                                      "attention_dropout": 0.0, "block_sizes": [1],
                                      "block_repeats": [1], "num_decoder_layers": 1, **overrides})
    keras.utils.set_random_seed(0)
    return FunnelForMaskedLM(cfg)


def _batch():
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 1100, size=(2, 16)).astype(np.int32)
    return {"input_ids": tf.constant(ids), "attention_mask": tf.ones([2, 16], tf.int32),
            "token_type_ids": tf.zeros([2, 16], tf.int32)}


def test_compute_weight_is_the_cast_without_copies_and_the_copy_within():
    v = tf.Variable(tf.random.normal([4, 3]))
    copy = tf.Variable(tf.ones([4, 3], tf.bfloat16))
    np.testing.assert_array_equal(compute_weight(v, tf.bfloat16).numpy(),
                                  tf.cast(v, tf.bfloat16).numpy())
    with using_copies({id(v): copy}) as read:
        np.testing.assert_array_equal(compute_weight(v, tf.bfloat16).numpy(), copy.numpy())
        # a float32 read of the same variable is not served by the bf16 copy
        np.testing.assert_array_equal(compute_weight(v, tf.float32).numpy(), v.numpy())
    assert read == {id(v)}
    np.testing.assert_array_equal(compute_weight(v, tf.bfloat16).numpy(),
                                  tf.cast(v, tf.bfloat16).numpy())


def test_only_large_float32_matrices_get_copies(bf16_policy):
    model = _tiny_mlm()
    copies = WeightCopies(model.trainable_variables)
    assert copies.masters and all(len(v.shape) >= 2 and v.shape.num_elements() >= MIN_SIZE
                                  for v in copies.masters)
    assert all(c.dtype == tf.bfloat16 and not c.trainable for c in copies.copies)
    assert maybe_weight_copies(model.trainable_variables, "float32", True) is None
    assert maybe_weight_copies(model.trainable_variables, "bfloat16", False) is None


def test_copies_give_the_same_loss_and_gradients_as_casts(bf16_policy, monkeypatch):
    """The tied word-embedding table is read both ways (gathered in float32, multiplied in the MLM
    head through its copy): both gradient parts are summed, equal to the plain cast's gradient."""
    import funnel_tf.engine.weight_copies as wc
    monkeypatch.setattr(wc, "MIN_SIZE", 1 << 12)  # so the tiny model's kernels get copies too
    # The two traced functions are the cost, and they grow with the layer count (_tiny_mlm).
    model = _tiny_mlm()
    x = _batch()
    variables = model.trainable_variables
    copies = wc.WeightCopies(variables)
    assert len(copies) > 10

    def loss_fn():
        return tf.reduce_mean(tf.square(model(x, training=True)["logits"]))

    @tf.function
    def plain():
        with tf.GradientTape() as tape:
            loss = loss_fn()
        return loss, [tf.convert_to_tensor(g) for g in tape.gradient(loss, variables)]

    @tf.function
    def through_copies():
        with tf.GradientTape() as tape:
            with copies.forward(tape):
                loss = loss_fn()
        pairs = copies.gradients(tape, loss, variables)
        return loss, [copies.combine(d, c, v) for (d, c), v in zip(pairs, variables)]

    loss_a, grads_a = plain()
    loss_b, grads_b = through_copies()
    assert len(copies.read_ids) == len(copies)  # every copy was read by the forward
    table = model.funnel.embeddings.word_embeddings
    assert id(table) in copies.read_ids
    assert float(loss_a) == float(loss_b)
    # The same bf16 ops either way; on the TPU build (tensorflow-tpu 2.20, TF's own CPU kernels)
    # about one process in three rounds a few bf16 gradients one ulp differently between the two
    # functions (seen: 3.7e-9 on a kernel whose gradients reach 7e-7). So the bound is 4 bf16 ulps
    # at each tensor's scale; a lost or doubled gradient part is off by the whole scale.
    for v, a, b in zip(variables, grads_a, grads_b):
        a, b = a.numpy(), b.numpy()
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=max(1e-9, 2.0**-6 * np.abs(a).max()),
                                   err_msg=v.path)


def test_refresh_follows_the_masters(bf16_policy):
    model = _tiny_mlm()
    copies = WeightCopies(model.trainable_variables)
    m, c = copies.masters[0], copies.copies[0]
    m.assign(m * 2.0 + 1.0)
    assert not np.array_equal(c.numpy(), tf.cast(m, tf.bfloat16).numpy())
    copies.refresh()
    np.testing.assert_array_equal(c.numpy(), tf.cast(m, tf.bfloat16).numpy())
