"""Training checkpoints (every variable, optimizer slots, step, data position, fallbacks) and
warm starts (training checkpoints and Keras *.weights.h5), with loud failures."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from funnel_tf.config import load_config
from funnel_tf.modeling.heads import FunnelForMaskedLM, FunnelForPreTraining
from funnel_tf.training.checkpointing import (
    CheckpointError, TrainingCheckpoint, model_weights, read_step, resolve_checkpoint, warm_start)
from funnel_tf.training.optimization import make_optimizer

from . import toy


def tiny(**kw):
    base = dict(vocab_size=64, block_sizes=[1, 1], block_repeats=[1, 1], num_decoder_layers=1)
    return load_config("tiny").replace(**{**base, **kw})


def _perturb(variables, seed):
    r = np.random.RandomState(seed)
    for v in variables:
        v.assign(r.normal(size=v.shape).astype(np.float32))


def test_model_weights_cover_every_trainable_variable_of_the_funnel():
    m = FunnelForMaskedLM(tiny())
    table = model_weights(m)
    assert len(table) == len(m.trainable_variables)
    assert any("encoder/layer_1/" in p for p in table) and any("decoder/layer_2/" in p for p in table)


def test_model_weights_suffix_repeated_paths():
    a = keras.Variable(1.0, name="w")
    b = keras.Variable(2.0, name="w")

    class Two(keras.Model):
        def __init__(self):
            super().__init__()
            self.a, self.b = a, b
    assert list(model_weights(Two())) == ["w", "w#2"]


def test_save_restore_everything_exactly(tmp_path):
    """Model weights (including layers that attribute tracking misses), dropout seed state,
    optimizer slots + iteration count, step and the tf.data iterator all round-trip."""
    m = FunnelForMaskedLM(tiny(), name="masked_lm")
    opt = make_optimizer(m.trainable_variables, 1e-3)
    opt.apply([tf.ones_like(v) * 0.01 for v in m.trainable_variables], m.trainable_variables)
    step = tf.Variable(7, dtype=tf.int64)
    it = iter(tf.data.Dataset.range(100).shuffle(10, seed=1))
    next(it), next(it)
    ck = TrainingCheckpoint(str(tmp_path), {"model": m, "optimizer": opt}, step, data_iterator=it)
    path = ck.save()
    assert path.endswith("ckpt-7") and ck.saves_data and read_step(str(tmp_path)) == 7
    saved = [v.numpy().copy() for v in m.variables + opt.variables]
    expected_next = [int(next(it)) for _ in range(3)]

    _perturb(m.trainable_variables + opt.variables[1:], 0)
    step.assign(0)
    it2 = iter(tf.data.Dataset.range(100).shuffle(10, seed=1))
    ck2 = TrainingCheckpoint(str(tmp_path), {"model": m, "optimizer": opt}, step, data_iterator=it2)
    assert ck2.restore_latest() == path
    assert int(step.numpy()) == 7
    for a, b in zip(saved, [v.numpy() for v in m.variables + opt.variables]):
        np.testing.assert_array_equal(a, b)
    assert [int(next(it2)) for _ in range(3)] == expected_next


def test_unsaveable_pipeline_falls_back_to_no_data_state(tmp_path):
    m = toy.ToyMLM()
    step = tf.Variable(3, dtype=tf.int64)
    gen = tf.data.Dataset.from_generator(lambda: iter(range(10)),
                                         output_signature=tf.TensorSpec([], tf.int64))
    it = iter(gen)
    next(it)
    ck = TrainingCheckpoint(str(tmp_path), {"model": m}, step, data_iterator=it)
    assert ck.saves_data
    ck.save()  # PyFunc state cannot be serialised: saved without it, with a warning
    assert not ck.saves_data
    keys = tf.train.load_checkpoint(ck.latest).get_variable_to_shape_map()
    assert not any(k.startswith("data/") for k in keys)
    # A fresh checkpoint object with an iterator restores it anyway, minus the data position.
    ck2 = TrainingCheckpoint(str(tmp_path), {"model": m}, step,
                             data_iterator=iter(tf.data.Dataset.range(3)))
    ck2.restore_latest()
    assert not ck2.saves_data


def test_restore_into_a_different_model_is_a_clear_error(tmp_path):
    step = tf.Variable(1, dtype=tf.int64)
    TrainingCheckpoint(str(tmp_path), {"model": FunnelForMaskedLM(tiny())}, step).save()
    other = FunnelForMaskedLM(tiny(block_sizes=[1, 1, 1], block_repeats=[1, 1, 1]))
    with pytest.raises(CheckpointError, match="does not match this model"):
        TrainingCheckpoint(str(tmp_path), {"model": other}, step).restore_latest()


def test_keep_only_the_newest(tmp_path):
    step = tf.Variable(0, dtype=tf.int64)
    ck = TrainingCheckpoint(str(tmp_path), {"model": toy.ToyMLM()}, step, keep=2)
    for s in (1, 2, 3):
        step.assign(s)
        ck.save()
    idx = sorted(f for f in os.listdir(tmp_path / "checkpoints") if f.endswith(".index"))
    assert idx == ["ckpt-2.index", "ckpt-3.index"]


def test_warm_start_electra_discriminator_from_an_mlm_training_checkpoint(tmp_path):
    mlm = FunnelForMaskedLM(tiny(), name="masked_lm")
    _perturb(mlm.trainable_variables, 1)
    TrainingCheckpoint(str(tmp_path), {"model": mlm}, tf.Variable(5, dtype=tf.int64)).save()
    disc = FunnelForPreTraining(tiny(), name="discriminator")
    msg = warm_start(disc.funnel, str(tmp_path))
    assert "[model]" in msg
    for a, b in zip(mlm.funnel.trainable_variables, disc.funnel.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_warm_start_from_a_checkpoint_that_also_holds_the_optimizer(tmp_path):
    """What pretrain.py writes (model + optimizer + step): the backbone still warm-starts, although
    the variables are stored once, under the optimizer's path rather than the model table's."""
    mlm = FunnelForMaskedLM(tiny(), name="masked_lm")
    _perturb(mlm.trainable_variables, 2)
    opt = make_optimizer(mlm.trainable_variables, 1e-3)
    opt.apply([tf.ones_like(v) * 0.01 for v in mlm.trainable_variables], mlm.trainable_variables)
    TrainingCheckpoint(str(tmp_path), {"model": mlm, "optimizer": opt}, tf.Variable(9, dtype=tf.int64)).save()
    fresh = FunnelForMaskedLM(tiny(), name="masked_lm")
    msg = warm_start(fresh.funnel, str(tmp_path))
    assert "[model]" in msg
    for a, b in zip(mlm.funnel.trainable_variables, fresh.funnel.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_warm_start_from_weights_h5(tmp_path):
    src = toy.ToyMLM()
    _perturb(src.trainable_variables, 2)
    src.funnel.save_weights(str(tmp_path / "backbone.weights.h5"))
    dst = toy.ToyMLM()
    assert "backbone" in warm_start(dst.funnel, str(tmp_path))  # directory with one .weights.h5
    for a, b in zip(src.funnel.trainable_variables, dst.funnel.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # A full head model's weights file loads through the head model.
    src.save_weights(str(tmp_path / "full.weights.h5"))
    dst2 = toy.ToyMLM()
    assert warm_start(dst2.funnel, str(tmp_path / "full.weights.h5"),
                      {"model": dst2}).startswith("model")
    for a, b in zip(src.trainable_variables, dst2.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_funnel_weights_h5_warm_start_is_complete_or_refused(tmp_path):
    """Never a silent partial load: either every backbone tensor arrives or CheckpointError."""
    src = FunnelForMaskedLM(tiny())
    _perturb(src.trainable_variables, 3)
    src.funnel.save_weights(str(tmp_path / "b.weights.h5"))
    dst = FunnelForMaskedLM(tiny())
    try:
        warm_start(dst.funnel, str(tmp_path / "b.weights.h5"))
    except CheckpointError as e:
        assert "partial load" in str(e)
        return
    for a, b in zip(src.funnel.trainable_variables, dst.funnel.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_warm_start_refuses_partial_or_foreign_checkpoints(tmp_path):
    small = FunnelForMaskedLM(tiny())
    TrainingCheckpoint(str(tmp_path / "a"), {"model": small}, tf.Variable(1, dtype=tf.int64)).save()
    bigger = FunnelForMaskedLM(tiny(block_sizes=[1, 2], block_repeats=[1, 1]))
    with pytest.raises(CheckpointError, match="no complete Funnel backbone"):
        warm_start(bigger.funnel, str(tmp_path / "a"))
    with pytest.raises(CheckpointError, match="holds no TF checkpoint"):
        os.makedirs(tmp_path / "empty")
        warm_start(small.funnel, str(tmp_path / "empty"))
    with pytest.raises(CheckpointError, match=r"not a checkpoint"):
        resolve_checkpoint(str(tmp_path / "nope" / "ckpt-1"))
    toy.ToyMLM().save_weights(str(tmp_path / "toy.weights.h5"))
    with pytest.raises(CheckpointError, match="matches neither"):
        warm_start(small.funnel, str(tmp_path / "toy.weights.h5"), {"model": small})
