"""The losses every task shares: softmax cross-entropy with its accuracy, sigmoid cross-entropy,
weighted sums and a division that is 0 for an empty batch.

One definition for MLM / ELECTRA (per masked slot / token), GLUE / text classification and RACE
(per example) and SQuAD's start positions, so that they cannot drift apart. Written in keras.ops:
the same code runs inside the TensorFlow engine's compiled step (where keras.ops lowers to the
tf.nn ops, numbers unchanged) and in the JAX engine's jitted step.
"""

from __future__ import annotations

from typing import Tuple

from keras import ops


def cross_entropy_and_correct(logits, labels) -> Tuple[object, object]:
    """Softmax cross-entropy and whether the argmax is the label: logits float32 [..., C],
    labels int [...] -> (ce float32 [...], correct float32 [...] of 0/1)."""
    labels = ops.cast(labels, "int32")
    logits = ops.cast(logits, "float32")
    ce = ops.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    correct = ops.cast(ops.equal(ops.cast(ops.argmax(logits, axis=-1), "int32"), labels),
                       "float32")
    return ce, correct


def sigmoid_cross_entropy(labels, logits):
    """Per-element sigmoid cross-entropy (tf.nn.sigmoid_cross_entropy_with_logits): labels and
    logits float32 of one shape -> float32 of that shape."""
    return ops.binary_crossentropy(ops.cast(labels, "float32"), ops.cast(logits, "float32"),
                                   from_logits=True)


def weighted_sum(values, weights):
    """sum(values * weights) in float32 (values and weights of one shape)."""
    return ops.sum(ops.cast(values, "float32") * ops.cast(weights, "float32"))


def divide_no_nan(num, den):
    """num / den in float32, 0 where den == 0 (an empty global batch: no NaN)."""
    return ops.divide_no_nan(ops.cast(num, "float32"), ops.cast(den, "float32"))


def masked_lm_terms(logits, labels, weights):
    """Per-slot cross-entropy and correctness, both weighted: logits float32 [B, P, V],
    labels int [B, P], weights float [B, P] -> (weighted CE sum, weighted correct sum, weight
    sum)."""
    weights = ops.cast(weights, "float32")
    ce, correct = cross_entropy_and_correct(logits, labels)  # [B, P] each
    return ops.sum(ce * weights), ops.sum(correct * weights), ops.sum(weights)
