"""Relative positions: token positions per block and the distances the relative shift reads."""

import numpy as np
import pytest
import tensorflow as tf

from funnel_tf.modeling.attention_probs import relative_shift
from funnel_tf.modeling.position import block_positions, relative_distances, sinusoid


def test_block_positions_separate_cls():
    p = block_positions(9, 3, separate_cls=True, truncate_seq=True)
    np.testing.assert_array_equal(p[0], np.arange(9))
    np.testing.assert_array_equal(p[1], [-1, 1, 3, 5, 7])
    np.testing.assert_array_equal(p[2], [-3, 1, 5])


def _distance_read(pq, pk, stride, shift):
    """Which distance each (i, j) score reads after the relative shift of a table over `dist`."""
    dist = relative_distances(pk, stride, pq, shift) if shift == 2 else relative_distances(pq, stride)
    lq, lk = len(pq), len(pk)
    table = np.broadcast_to(dist[None, None, None, :].astype(np.float32), (1, 1, lq, len(dist)))
    return relative_shift(tf.constant(table), lk, shift)[0, 0].numpy()


@pytest.mark.parametrize("seq_len", [7, 8, 13, 16])
def test_relative_shift_reads_query_minus_key_distance(seq_len):
    pos = block_positions(seq_len, 3, True, True)
    for b in range(3):
        got = _distance_read(pos[b], pos[b], 2 ** b, 1)
        want = pos[b][:, None] - pos[b][None, :]
        np.testing.assert_array_equal(got[1:, 1:], want[1:, 1:])  # CLS row/col are masked anyway
        if b:
            got = _distance_read(pos[b], pos[b - 1], 2 ** (b - 1), 2)
            want = pos[b][:, None] - pos[b - 1][None, :]
            np.testing.assert_array_equal(got[1:, 1:], want[1:, 1:])


def test_sinusoid_is_sin_then_cos_halves():
    sin, cos = sinusoid(np.array([0, 1, -3]), 8)
    assert sin.shape == (3, 4)
    freqs = 1.0 / 10000 ** (np.arange(4) / 4.0)
    np.testing.assert_allclose(sin.numpy(), np.sin(np.array([0, 1, -3])[:, None] * freqs), atol=1e-6)
    np.testing.assert_allclose(cos.numpy(), np.cos(np.array([0, 1, -3])[:, None] * freqs), atol=1e-6)
