"""The ELECTRA task on a tiny real Funnel: generator config, sampling, shared embeddings, labels."""

import numpy as np
import pytest
import tensorflow as tf

from funnel_tf.config import load_config
from funnel_tf.tasks.electra import ElectraTask, generator_config, gumbel_argmax, scatter_to_sequence
from funnel_tf.tasks.pretraining import pretraining_task
from tests.tasks.mlm_features import L, P, V, features, tiny_config


def test_generator_config_is_quarter_width_of_small():
    small = load_config("small")
    gen = generator_config(small)
    assert (gen.d_model, gen.n_head, gen.d_head, gen.d_inner) == (192, 3, 64, 768)
    assert gen.d_embed == 768 and gen.mlm_transform and gen.block_sizes == small.block_sizes
    assert gen.num_decoder_layers == small.num_decoder_layers


def test_scatter_to_sequence_ignores_padded_slots():
    grid, target = scatter_to_sequence(tf.constant([[7, 9, 5]]), tf.constant([[2, 4, 0]]),
                                       tf.constant([[1.0, 1.0, 0.0]]), 6)
    np.testing.assert_array_equal(grid.numpy(), [[0, 0, 7, 0, 9, 0]])
    np.testing.assert_array_equal(target.numpy(), [[False, False, True, False, True, False]])


def test_gumbel_argmax_samples_the_softmax_and_is_reproducible():
    logits = tf.math.log(tf.constant([[0.1, 0.6, 0.3]] * 20000))
    s = gumbel_argmax(logits, tf.constant([3, 1]))
    freq = np.bincount(s.numpy(), minlength=3) / 20000
    np.testing.assert_allclose(freq, [0.1, 0.6, 0.3], atol=0.015)
    np.testing.assert_array_equal(s.numpy(), gumbel_argmax(logits, tf.constant([3, 1])).numpy())
    assert not np.array_equal(s.numpy(), gumbel_argmax(logits, tf.constant([4, 1])).numpy())


def test_electra_shares_embeddings_and_combines_losses():
    obj = pretraining_task("electra", tiny_config(), disc_weight=50.0)
    obj.build()
    disc, gen = obj.discriminator, obj.generator
    assert gen.funnel.embeddings is disc.funnel.embeddings
    assert gen.config.d_model == 16 and gen.config.d_embed == 64
    table = disc.funnel.embeddings.word_embeddings
    assert sum(v is table for v in obj.trainable_variables) == 1  # shared once
    gen_paths = [v.path for v in gen.trainable_variables if v.path.startswith("generator/")]
    assert gen_paths and not set(gen_paths) & {v.path for v in disc.trainable_variables}

    f = features()
    norms = obj.local_normalizers(f)
    assert float(norms["disc_count"]) == 4 * L - 5
    loss, st = obj.loss_and_stats(f, norms, training=False, seed=tf.constant([0, 0]))
    assert float(loss) == pytest.approx(float(st["gen_loss"]) + 50 * float(st["disc_loss"]),
                                        rel=1e-5)
    assert float(st["disc_count"]) == 4 * L - 5
    # Only masked slots can be replaced; an untrained generator almost never hits the original.
    assert 0 < float(st["replaced"]) <= float(st["gen_count"]) == 4 * P - 1
    assert 0 <= float(st["disc_correct"]) <= float(st["disc_count"])


def test_electra_labels_follow_the_samples():
    """With a generator that always predicts the original token, nothing counts as replaced."""
    obj = ElectraTask(tiny_config())
    obj.build()
    f = features()
    orig = tf.one_hot(f["masked_ids"], V) * 1e4  # overwhelming logits on the original ids
    obj.generator.call = lambda inputs, masked_positions=None, training=False: {"logits": orig}
    norms = obj.local_normalizers(f)
    _, st = obj.loss_and_stats(f, norms, training=False, seed=tf.constant([5, 0]))
    assert float(st["replaced"]) == 0.0
    assert float(st["gen_correct"]) == float(st["gen_count"])
