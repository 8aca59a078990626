"""fit never trains on poison: a step whose loss or a gradient is not finite applies no update.
compile(nonfinite="stop") (the default) then raises NonFiniteLossError naming the step, with the
weights at their last finite values; "skip" goes on and counts such steps. The NaN / overflow sits
past the first batch, which is the one fit's up-front label check reads."""

import numpy as np
import pytest
import tensorflow as tf

from funnel_tf import FunnelConfig, FunnelForSequenceClassification, FunnelTextClassifier, FunnelTokenizer, xla
from funnel_tf.errors import UserError
from funnel_tf.resources import demo_vocab_path
from funnel_tf.engine.actions import NonFiniteLossError
from tests.test_classifier_preprocessor import compiled_step_report

TEXTS = ["good", "great", "fine", "nice", "bad", "awful", "poor", "sad"] * 3  # 6 batches of 4


@pytest.fixture(scope="module")
def reg():
    tokenizer = FunnelTokenizer(demo_vocab_path(), sequence_length=8)
    config = FunnelConfig(vocab_size=tokenizer.vocab_size, block_sizes=[1, 1], num_decoder_layers=1, d_model=16,
                          n_head=2, d_head=8, d_inner=24, hidden_dropout=0.0, attention_dropout=0.0)
    clf = FunnelTextClassifier(FunnelForSequenceClassification(config, num_labels=1), tokenizer)
    clf.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
    return clf


def _data(poison_at, value):
    labels = np.linspace(0.0, 1.0, len(TEXTS)).astype(np.float32)
    labels[poison_at] = value
    return tf.data.Dataset.from_tensor_slices((TEXTS, labels)).batch(4)


def _weights(clf):
    return [w.numpy().copy() for w in clf.model.trainable_weights]


def test_stop_then_skip(reg):
    before = _weights(reg)
    with pytest.raises(NonFiniteLossError, match=r"not finite at step 2 of this fit \(epoch 1, batch 2\).*"
                                                 r"nonfinite=\"skip\"") as e:
        reg.fit(_data(5, np.nan), epochs=1, verbose=0)  # batch 2 holds a NaN label
    assert isinstance(e.value, UserError)
    after = _weights(reg)
    assert all(np.isfinite(w).all() for w in after)
    assert int(reg.optimizer.iterations.numpy()) == 1  # step 1 applied, nothing after
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))
    # The guarded step is XLA-compiled where the host can, on int features (tokenized in tf.data).
    xla_fns, string_ops = compiled_step_report(reg.train_function)
    assert bool(xla_fns) == xla.can_jit() and not string_ops, (xla_fns, sorted(set(string_ops)))

    # The policy is a variable of the compiled step: switching it does not retrace.
    reg.set_nonfinite("skip")
    history = reg.fit(_data(13, 1e30), epochs=1, verbose=0)  # an overflowing (inf) loss in batch 4
    assert history.history["nonfinite_steps"] == [1]
    assert np.isfinite(history.history["loss"]).all()  # the skipped step is left out of the mean
    assert int(reg.optimizer.iterations.numpy()) == 1 + 5
    assert all(np.isfinite(w).all() for w in _weights(reg))

    reg.set_nonfinite("skip", max_nonfinite=1)
    with pytest.raises(NonFiniteLossError, match="2 steps skipped .*max_nonfinite=1"):
        reg.fit(_data(5, np.inf).concatenate(_data(5, np.nan)), epochs=1, verbose=0)

    # The three fits' datasets share one tokenizing map function, traced once for their
    # (texts, labels) elements (FunnelTextClassifierPreprocessor.map; tracing it was most of a fit's
    # dataset cost).
    from funnel_tf.text.packing import _TRACED

    maps = [fn for key, fn in _TRACED.get(reg.tokenizer, {}).items() if key[0] == "text_classifier"]
    assert [fn.experimental_get_tracing_count() for fn in maps] == [1]


def test_policy_is_checked_at_compile(reg):
    with pytest.raises(ValueError, match=r"nonfinite must be one of \('stop', 'skip'\), got 'ignore'"):
        reg.compile(nonfinite="ignore")
