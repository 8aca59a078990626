"""Pooling primitives against hand-worked examples."""

import numpy as np
import pytest
import tensorflow as tf

from funnel_tf.modeling.pooling import pool_tensor, stride_pool, upsample


def _x(t):
    return tf.constant(np.arange(t, dtype=np.float32)[None, :, None])  # [1, T, 1] values 0..T-1


def test_mean_pool_separate_cls_truncate():
    # [c, 1, 2, 3, 4, 5, 6] -> CLS kept, pairs (1,2) (3,4) (5,) ; token 6 dropped by truncation.
    out = pool_tensor(_x(7), "mean", separate_cls=True, truncate_seq=True)[0, :, 0].numpy()
    np.testing.assert_allclose(out, [0, 1.5, 3.5, 5])


def test_pool_without_truncation_keeps_last():
    out = pool_tensor(_x(7), "max", separate_cls=True, truncate_seq=False)[0, :, 0].numpy()
    np.testing.assert_allclose(out, [0, 2, 4, 6])


def test_pool_without_separate_cls_pairs_from_zero():
    out = pool_tensor(_x(5), "mean", separate_cls=False, truncate_seq=True)[0, :, 0].numpy()
    np.testing.assert_allclose(out, [0.5, 2.5, 4])


def test_min_pool_of_mask_keeps_slot_if_both_real():
    mask = tf.constant([[1, 1, 1, 1, 0, 0, 0, 0]], tf.float32)
    out = pool_tensor(mask, "min", separate_cls=True, truncate_seq=True).numpy()
    # pairs (1,2)=(1,1) (3,4)=(1,0) (5,6)=(0,0)
    np.testing.assert_allclose(out, [[1, 1, 0, 0]])


def test_stride_pool_keeps_cls_and_first_of_each_window():
    t = tf.constant(np.arange(8)[None])
    np.testing.assert_array_equal(stride_pool(t, 1, True, True).numpy(), [[0, 1, 3, 5]])
    np.testing.assert_array_equal(stride_pool(t, 1, True, False).numpy(), [[0, 1, 3, 5, 7]])
    np.testing.assert_array_equal(stride_pool(t, 1, False, True).numpy(), [[0, 2, 4, 6]])


@pytest.mark.parametrize("length", [7, 8, 12])
def test_upsample_closed_form(length):
    stride, lf = 4, {7: 2, 8: 2, 12: 3}[length]
    x = tf.constant(np.arange(1, lf + 1, dtype=np.float32)[None, :, None])
    up = upsample(x, stride, length, separate_cls=True, truncate_seq=True)[0, :, 0].numpy()
    expected = [1.0] + [float(1 + (1 + (p - 1) // stride)) if 1 + (p - 1) // stride < lf else 0.0
                        for p in range(1, length)]
    np.testing.assert_allclose(up, expected)


def test_static_length_required():
    @tf.function(input_signature=[tf.TensorSpec([1, None, 2])])
    def f(x):
        return pool_tensor(x, "mean", True, True)

    with pytest.raises(ValueError, match="static sequence length"):
        f.get_concrete_function()
