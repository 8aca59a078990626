"""MLM and ELECTRA objectives on a tiny real Funnel: loss values, global normalisers, sampling."""

import numpy as np
import pytest
import tensorflow as tf

from funnel_tf.config import load_config
from funnel_tf.pretraining.objectives import (
    ElectraObjective, MaskedLMObjective, generator_config, gumbel_argmax, make_objective,
    masked_lm_terms, scatter_to_sequence)

V, L, P = 64, 16, 4
MASK = 4


def tiny_config(**kw):
    return load_config("tiny").replace(vocab_size=V, block_sizes=[1, 1], block_repeats=[1, 1],
                                       num_decoder_layers=1, hidden_dropout=0.0,
                                       attention_dropout=0.0, **kw)


def features(n=4, seed=0):
    r = np.random.RandomState(seed)
    ids = r.randint(5, V, (n, L)).astype(np.int32)
    ids[:, 0] = 1
    mask = np.ones((n, L), np.int32)
    mask[1, -5:] = 0
    ids[mask == 0] = 0
    types = np.zeros((n, L), np.int32)
    types[:, 0] = 2
    pos = np.stack([np.sort(r.choice(np.arange(1, L - 5), P, replace=False)) for _ in range(n)])
    pos = pos.astype(np.int32)
    orig = np.take_along_axis(ids, pos, 1)
    masked = ids.copy()
    np.put_along_axis(masked, pos, MASK, 1)
    w = np.ones((n, P), np.float32)
    w[0, -1] = 0.0
    pos[0, -1] = 0  # padded slot, as the masker writes it
    orig[0, -1] = 0
    return {k: tf.constant(v) for k, v in dict(
        input_ids=masked, attention_mask=mask, token_type_ids=types, masked_positions=pos,
        masked_ids=orig, masked_weights=w).items()}


def test_masked_lm_terms_match_numpy():
    r = np.random.RandomState(1)
    logits = r.randn(2, 3, 5).astype(np.float32)
    labels = r.randint(0, 5, (2, 3))
    weights = np.array([[1, 1, 0], [1, 0, 0]], np.float32)
    ce, correct, count = (float(x) for x in masked_lm_terms(logits, labels, weights))
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    want = -(np.take_along_axis(logp, labels[..., None], -1)[..., 0] * weights).sum()
    assert ce == pytest.approx(want, rel=1e-5)
    assert correct == float(((logits.argmax(-1) == labels) * weights).sum())
    assert count == 3.0


def test_mlm_loss_is_global_weighted_mean_and_splits_across_replicas():
    obj = MaskedLMObjective(tiny_config())
    obj.build()
    f = features()
    norms = obj.local_normalizers(f)
    assert float(norms["mlm_count"]) == 4 * P - 1
    seed = tf.constant([0, 0])
    loss, stats = obj.loss_and_stats(f, norms, training=False, seed=seed)
    logits = obj.model({k: f[k] for k in ("input_ids", "attention_mask", "token_type_ids")},
                       masked_positions=f["masked_positions"])["logits"]
    ce, _, count = masked_lm_terms(logits, f["masked_ids"], f["masked_weights"])
    assert float(loss) == pytest.approx(float(ce / count), rel=1e-6)
    # Two "replicas" with the global normaliser: their shares add up to the full-batch loss.
    halves = [{k: v[i:i + 2] for k, v in f.items()} for i in (0, 2)]
    parts = [obj.loss_and_stats(h, norms, training=False, seed=seed)[0] for h in halves]
    assert float(sum(parts)) == pytest.approx(float(loss), rel=1e-5)
    assert set(stats) == {"loss", "mlm_correct", "mlm_count"}


def test_missing_feature_is_named():
    obj = MaskedLMObjective(tiny_config())
    obj.build()
    f = dict(features())
    del f["masked_weights"]
    with pytest.raises(KeyError, match="masked_weights"):
        obj.loss_and_stats(f, {"mlm_count": tf.constant(1.0)}, False, tf.constant([0, 0]))


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
    obj = make_objective("electra", tiny_config(), disc_weight=50.0)
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
    obj = ElectraObjective(tiny_config())
    obj.build()
    f = features()
    orig = tf.one_hot(f["masked_ids"], V) * 1e4  # overwhelming logits on the original ids
    obj.generator.call = lambda inputs, masked_positions=None, training=False: {"logits": orig}
    norms = obj.local_normalizers(f)
    _, st = obj.loss_and_stats(f, norms, training=False, seed=tf.constant([5, 0]))
    assert float(st["replaced"]) == 0.0
    assert float(st["gen_correct"]) == float(st["gen_count"])
