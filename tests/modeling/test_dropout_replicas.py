"""Dropout under tf.distribute (issue 19.2): each replica draws its own mask from the one mirrored
seed state (the TF1 original drew per core), while replica 0 and one-replica runs keep exactly the
masks of a run without a strategy. MirroredStrategy over the two logical CPUs of conftest."""

import numpy as np
import pytest
import tensorflow as tf

from funnel_tf.config import FunnelConfig
from funnel_tf.modeling.dropout import Dropout
from funnel_tf.modeling.model import FunnelModel


def _per_replica(strategy, fn, jit_compile=False):
    """fn() on every replica, in one tf.function; the replicas' results as numpy arrays."""
    step = tf.function(fn, jit_compile=True) if jit_compile else fn
    # A plain function around it, as the train loop does: strategy.run lifts a tf.function it is
    # given directly (and with it the XLA cluster) over all replicas.
    out = tf.function(lambda: strategy.run(lambda: step()))()
    return [t.numpy() for t in strategy.experimental_local_results(out)]


@pytest.mark.parametrize("jit_compile", [False, pytest.param(True, marks=pytest.mark.needs_host_xla)])
def test_replicas_draw_different_masks_and_replica_0_keeps_its_own(mirrored, jit_compile):
    x = tf.ones([16, 64])
    with mirrored.scope():
        layer = Dropout(0.5, seed=7)
    train = _per_replica(mirrored, lambda: layer(x, training=True), jit_compile)
    infer = _per_replica(mirrored, lambda: layer(x, training=False) * 1, jit_compile)
    assert (train[0] != train[1]).any()
    for y in train:
        assert abs((y != 0).mean() - 0.5) < 0.1
    np.testing.assert_array_equal(infer[0], infer[1])
    # Replica 0's mask is the one the same layer draws without a strategy (same seed, same step).
    alone = Dropout(0.5, seed=7)
    step = tf.function(lambda: alone(x, training=True), jit_compile=jit_compile)
    np.testing.assert_array_equal(train[0], step().numpy())


def test_model_replicas_differ_in_training_only(mirrored):
    """Every dropout of the model (embeddings, attention, FFN: the fused paths) on the same input.
    One block (no pooling: it adds no dropout, only tracing) and one decoder layer; training and
    inference traced in one function."""
    config = FunnelConfig(vocab_size=50, block_sizes=[1], num_decoder_layers=1, d_model=16, n_head=2,
                          d_head=8, d_inner=24, hidden_dropout=0.1, attention_dropout=0.1,
                          activation_dropout=0.1)
    ids = tf.constant(np.random.RandomState(0).randint(0, 50, (2, 12)), tf.int32)
    with mirrored.scope():
        model = FunnelModel(config)
        model({"input_ids": ids})

    def run():
        return [model({"input_ids": ids}, training=training)["last_hidden_state"]
                for training in (True, False)]
    out = tf.function(lambda: mirrored.run(run))()
    train, infer = ([t.numpy() for t in mirrored.experimental_local_results(o)] for o in out)
    assert np.abs(train[0] - train[1]).max() > 1e-3
    np.testing.assert_allclose(infer[0], infer[1], atol=1e-6)


class _TensorReplicaContext:
    """What TPUStrategy's replica context gives: the replica id as a tensor, not a constant."""

    num_replicas_in_sync = 2

    def __init__(self, replica_id):
        self.replica_id_in_sync_group = replica_id


@pytest.mark.parametrize("jit_compile", [False, pytest.param(True, marks=pytest.mark.needs_host_xla)])
def test_tensor_replica_id_gives_the_mirrored_seeds(mirrored, monkeypatch, jit_compile):
    """The TPU path (id known only when the step runs, inside XLA there) derives the same seeds as
    the MirroredStrategy one: replica 0 unchanged, replica 1 folded in."""
    from funnel_tf.modeling.tf_kernels import dropout

    seed = tf.constant([123, 4], tf.int32)
    mirrored_seeds = _per_replica(mirrored, lambda: dropout.replica_seed(seed) * 1)

    def traced(replica):
        with monkeypatch.context() as patch:
            patch.setattr(tf.distribute, "get_replica_context", lambda: _TensorReplicaContext(replica))
            return dropout.replica_seed(seed)
    fn = tf.function(traced, jit_compile=jit_compile)
    for r in (0, 1):
        np.testing.assert_array_equal(fn(tf.constant(r)).numpy(), mirrored_seeds[r])
    np.testing.assert_array_equal(mirrored_seeds[0], seed.numpy())
    assert (mirrored_seeds[1] != seed.numpy()).any()
