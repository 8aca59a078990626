"""FunnelTextClassifier under KERAS_BACKEND=jax (CI's .ci/jax_suite.sh runs this file; the standard
TensorFlow suite skips it): Keras' own compile / fit / evaluate / predict on raw text with
funnel_tf.classifier_jax's train step, the same non-finite guard as on TensorFlow, and saves
(save_pretrained, .keras) that give back the same logits."""

import keras
import numpy as np
import pytest

pytest.importorskip("jax")
pytestmark = pytest.mark.skipif(keras.backend.backend() != "jax",
                                reason="the classifier on JAX: run with KERAS_BACKEND=jax")

from funnel_tf import FunnelConfig, FunnelForSequenceClassification, FunnelTextClassifier, FunnelTokenizer  # noqa: E402
from funnel_tf.engine.actions import NonFiniteLossError  # noqa: E402
from funnel_tf.resources import demo_vocab_path  # noqa: E402

TEXTS = ["good", "great", "fine", "nice", "bad", "awful", "poor", "sad"] * 2
LABELS = [1, 1, 1, 1, 0, 0, 0, 0] * 2


def _classifier(num_labels):
    tokenizer = FunnelTokenizer(demo_vocab_path(), sequence_length=8)
    config = FunnelConfig(vocab_size=tokenizer.vocab_size, block_sizes=[1, 1], num_decoder_layers=1, d_model=16,
                          n_head=2, d_head=8, d_inner=24, hidden_dropout=0.0, attention_dropout=0.0)
    keras.utils.set_random_seed(0)
    return FunnelTextClassifier(FunnelForSequenceClassification(config, num_labels=num_labels), tokenizer,
                                label_names=["neg", "pos"] if num_labels == 2 else None)


def test_fit_predict_evaluate_and_saves_on_jax(tmp_path):
    clf = _classifier(2)
    clf.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = clf.fit(TEXTS, LABELS, batch_size=8, epochs=4, verbose=0, seed=0)
    loss = history.history["loss"]
    assert loss[-1] < loss[0] and history.history["nonfinite_steps"] == [0] * 4
    assert int(clf.optimizer.iterations.numpy()) == 8
    logits = clf.predict(["a good film"])
    assert logits.shape == (1, 2) and logits.dtype == np.float32
    assert set(clf.evaluate(TEXTS, LABELS, batch_size=8, return_dict=True)) == {"loss", "accuracy"}

    folder = clf.save_pretrained(str(tmp_path / "clf"))
    again = FunnelTextClassifier.from_pretrained(folder)
    assert again.label_names == ["neg", "pos"]
    np.testing.assert_allclose(again.predict(["a good film"]), logits, atol=1e-6)
    clf.save(str(tmp_path / "clf.keras"))
    loaded = keras.saving.load_model(str(tmp_path / "clf.keras"))
    assert type(loaded) is FunnelTextClassifier
    np.testing.assert_allclose(loaded.predict(["a good film"]), logits, atol=1e-6)


def _regression_data(poison_at, value):
    import tensorflow as tf

    labels = np.linspace(0.0, 1.0, len(TEXTS)).astype(np.float32)
    labels[poison_at] = value
    return tf.data.Dataset.from_tensor_slices((TEXTS, labels)).batch(4)  # 4 batches


def test_nonfinite_guard_on_jax():
    """As tests/test_classifier_nonfinite.py on TF: "stop" raises at the bad step with its update
    not applied; "skip" leaves it out (weights, optimizer step, loss mean) and counts it."""
    reg = _classifier(1)
    reg.compile(optimizer=keras.optimizers.Adam(1e-3))
    before = [np.array(w) for w in reg.model.trainable_weights]
    with pytest.raises(NonFiniteLossError, match=r"not finite at step 2 of this fit \(epoch 1, batch 2\)"):
        reg.fit(_regression_data(5, np.nan), epochs=1, verbose=0)  # batch 2 holds a NaN label
    after = [np.array(w) for w in reg.model.trainable_weights]
    assert int(reg.optimizer.iterations.numpy()) == 1  # step 1 applied, nothing after
    assert all(np.isfinite(w).all() for w in after)
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))

    reg.set_nonfinite("skip")
    history = reg.fit(_regression_data(13, 1e30), epochs=1, verbose=0)  # an overflowing loss in batch 4
    assert history.history["nonfinite_steps"] == [1]
    assert np.isfinite(history.history["loss"]).all()
    assert int(reg.optimizer.iterations.numpy()) == 1 + 3
    assert all(np.isfinite(np.array(w)).all() for w in reg.model.trainable_weights)
