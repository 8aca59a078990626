"""The losses every task shares: softmax cross-entropy with its accuracy, and weighted sums.

One definition for MLM / ELECTRA's generator (per masked slot), GLUE / text classification and
RACE (per example) and SQuAD's start positions, so that they cannot drift apart.
"""

from __future__ import annotations

from typing import Tuple

import tensorflow as tf


def cross_entropy_and_correct(logits: tf.Tensor, labels: tf.Tensor
                              ) -> Tuple[tf.Tensor, tf.Tensor]:
    """Softmax cross-entropy and whether the argmax is the label: logits float32 [..., C],
    labels int [...] -> (ce float32 [...], correct float32 [...] of 0/1)."""
    labels = tf.cast(labels, tf.int32)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32)
    return ce, correct


def weighted_sum(values: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    """sum(values * weights) in float32 (values and weights of one shape)."""
    return tf.reduce_sum(tf.cast(values, tf.float32) * tf.cast(weights, tf.float32))


def masked_lm_terms(logits: tf.Tensor, labels: tf.Tensor, weights: tf.Tensor):
    """Per-slot cross-entropy and correctness, both weighted: logits float32 [B, P, V],
    labels int [B, P], weights float [B, P] -> (weighted CE sum, weighted correct sum, weight sum)."""
    logits = tf.cast(logits, tf.float32)
    weights = tf.cast(weights, tf.float32)
    ce, correct = cross_entropy_and_correct(logits, labels)  # [B, P] each
    return tf.reduce_sum(ce * weights), tf.reduce_sum(correct * weights), tf.reduce_sum(weights)
