"""FunnelTextClassifier checks fit / evaluate / predict arguments before Keras compiles anything:
one ClassifierError (ValueError; ClassifierTypeError also TypeError) naming the argument. No test
here compiles a step (each would take 30-60 s): every call below fails before that."""

import numpy as np
import pytest
import tensorflow as tf

from funnel_tf import FunnelConfig, FunnelForSequenceClassification, FunnelTextClassifier, FunnelTokenizer
from funnel_tf.classifier_inputs import ClassifierError, ClassifierTypeError
from funnel_tf.errors import UserError
from funnel_tf.resources import demo_vocab_path

TEXTS = ["a good film", "a bad film", "dull", "great"]


def _classifier(num_classes, pair=False):
    tokenizer = FunnelTokenizer(demo_vocab_path(), sequence_length=16)
    config = FunnelConfig(vocab_size=tokenizer.vocab_size, block_sizes=[1, 1], num_decoder_layers=1, d_model=16,
                          n_head=2, d_head=8, d_inner=24)
    clf = FunnelTextClassifier(FunnelForSequenceClassification(config, num_labels=num_classes), tokenizer,
                               pair=pair)
    clf.compile()
    return clf


@pytest.fixture(scope="module")
def clf():
    return _classifier(3)


@pytest.fixture(scope="module")
def reg():
    return _classifier(1)


@pytest.fixture(scope="module")
def pair_clf():
    return _classifier(2, pair=True)


def _raises(error, match, call):
    with pytest.raises(error, match=match) as e:
        call()
    assert isinstance(e.value, UserError) and isinstance(e.value, ValueError)
    return e.value


def _ds(*parts, batch=2):
    return tf.data.Dataset.from_tensor_slices(parts if len(parts) > 1 else parts[0]).batch(batch)


PREDICT_BAD = [
    (np.array([TEXTS, TEXTS]), ClassifierError, r"x: expected a 1-D list of texts \[N\], got an array of shape \[2, 4\]"),
    ([1, 2, 3], ClassifierTypeError, "x\\[0\\] is int 1: every text must be a string"),
    (np.arange(3), ClassifierTypeError, "x: expected texts \\(strings\\), got a numpy array of int64"),
    (["ok", None], ClassifierTypeError, r"x\[1\] is None: every text must be a string"),
    (None, ClassifierTypeError, "x: expected a list of texts, got None"),
    (42, ClassifierTypeError, "x: expected a list of texts, got int"),
    ((["a", "b"], ["c"]), ClassifierError, "2 texts but 1 pair_texts"),
    ({"input_ids": np.zeros([2, 16], np.float32)}, ClassifierTypeError, r"x\['input_ids'\]: expected int token ids"),
    (tf.data.Dataset.from_tensor_slices(TEXTS), ClassifierError, r"not batched.*\.batch\(32\)"),
    (_ds(np.arange(4)), ClassifierTypeError, "expected batches of texts"),
    (_ds(TEXTS, TEXTS), ClassifierError, r"read by Keras as \(texts, labels\).*\(\(texts, pair_texts\),\)"),
]


@pytest.mark.parametrize("x, error, match", PREDICT_BAD, ids=lambda v: None)
def test_predict_checks_its_input(clf, x, error, match):
    _raises(error, match, lambda: clf.predict(x))
    assert clf.predict_function is None  # refused before Keras traced anything


FIT_BAD = [
    (TEXTS, [0, 1, 2, 3], ClassifierError, r"y: label 3 at index 3 is out of range for 3 classes \(0..2\)"),
    (TEXTS, [0, -1, 2, 0], ClassifierError, "y: label -1 at index 1 is out of range"),
    (TEXTS, [0.0, 1.0, 0.5, 2.0], ClassifierTypeError, "integer class ids 0..2, got float64.*num_classes=1"),
    (TEXTS, ["neg", "pos", "neg", "pos"], ClassifierTypeError, r"integer class ids.*label_names\.index"),
    (TEXTS, [0, None, 1, 2], ClassifierTypeError, "got None at index 1"),
    (TEXTS, [[0, 1]] * 4, ClassifierError, r"one label per text \(shape \[N\]\), got shape \[4, 2\]"),
    (TEXTS, [0, 1], ClassifierError, "2 labels for 4 texts"),
    (TEXTS, None, ClassifierError, "y: labels are needed"),
    ([1, 2, 3, 4], [0, 1, 2, 0], ClassifierTypeError, r"x\[0\] is int 1"),
    (_ds(TEXTS, [0, 1, 2, 5], batch=4), None, ClassifierError, r"first batch.*label 5 at index 3 is out of range"),
    (_ds(TEXTS, [0.0, 1.0, 0.0, 1.0]), None, ClassifierTypeError, "labels are float32, but a classifier with 3"),
    (_ds(TEXTS, ["a", "b", "c", "d"]), None, ClassifierTypeError, "labels are string"),
    (_ds(TEXTS), None, ClassifierError, r"dataset of \(texts, labels\) batches"),
    (_ds(TEXTS, [0, 1, 2, 0]), [0, 1], ClassifierError, "y must be None with a dataset"),
]


@pytest.mark.parametrize("x, y, error, match", FIT_BAD, ids=lambda v: None)
def test_fit_and_evaluate_check_inputs_and_labels(clf, x, y, error, match):
    _raises(error, match, lambda: clf.fit(x, y, epochs=1, verbose=0))
    _raises(error, match, lambda: clf.evaluate(x, y))
    assert clf.train_function is None and clf.test_function is None


def test_regression_labels_must_be_finite_numbers(reg):
    _raises(ClassifierError, r"y: label nan at index 2 is not finite", lambda: reg.fit(TEXTS, [0.5, 1.0, np.nan, 2.0]))
    _raises(ClassifierError, r"label inf at index 0 is not finite",
            lambda: reg.fit(_ds(TEXTS, np.array([np.inf, 1, 2, 3], np.float32))))
    _raises(ClassifierTypeError, "regression classifier .* takes numbers", lambda: reg.fit(TEXTS, ["a", "b", "c", "d"]))
    assert reg.train_function is None


def test_pair_classifier_needs_pairs(pair_clf):
    _raises(ClassifierError, r"reads text pairs \(pair=True\)", lambda: pair_clf.predict(TEXTS))
    _raises(ClassifierError, r"reads text pairs \(pair=True\)", lambda: pair_clf.fit(TEXTS, [0, 1, 0, 1]))
    _raises(ClassifierError, r"reads text pairs", lambda: pair_clf.fit(_ds(TEXTS, [0, 1, 0, 1])))
    _raises(ClassifierTypeError, r"x\[1\] \(pair_texts\)\[0\] is int", lambda: pair_clf.predict((TEXTS, [1, 2, 3, 4])))
    assert pair_clf.predict_function is None and pair_clf.train_function is None
