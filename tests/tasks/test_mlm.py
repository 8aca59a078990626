"""The MLM task on a tiny real Funnel: loss values, global normalisers, missing features."""

import numpy as np
import pytest
import tensorflow as tf

from funnel_tf.tasks.losses import masked_lm_terms
from funnel_tf.tasks.mlm import MaskedLMTask
from tests.tasks.mlm_features import P, features, tiny_config


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
    obj = MaskedLMTask(tiny_config())
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
    obj = MaskedLMTask(tiny_config())
    obj.build()
    f = dict(features())
    del f["masked_weights"]
    with pytest.raises(KeyError, match="masked_weights"):
        obj.loss_and_stats(f, {"mlm_count": tf.constant(1.0)}, False, tf.constant([0, 0]))
