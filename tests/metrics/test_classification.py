"""Metric primitives against values derived by hand (and scipy as an extra oracle when installed)."""

import math

import numpy as np
import pytest

from funnel_tf.metrics import classification as cls

# Shared binary example: preds [1,1,0,0,1] vs labels [1,0,1,0,1]
#   TP = idx 0,4 -> 2   FP = idx 1 -> 1   FN = idx 2 -> 1   TN = idx 3 -> 1
P = [1, 1, 0, 0, 1]
Y = [1, 0, 1, 0, 1]


def test_accuracy():
    # matches at idx 0 and 2 of 4 -> 0.5
    assert cls.accuracy([1, 0, 1, 1], [1, 1, 1, 0]) == 0.5
    assert cls.accuracy(P, Y) == pytest.approx(3 / 5)


def test_f1_binary():
    # 2TP / (2TP + FP + FN) = 4 / 6
    assert cls.f1_binary(P, Y) == pytest.approx(2 / 3)
    # positive class 0: TP = idx 3 -> 1, FP = idx 2 -> 1, FN = idx 1 -> 1 -> 2/4
    assert cls.f1_binary(P, Y, positive=0) == pytest.approx(0.5)
    # no positive predicted and none true: 0/0 -> 0.0 (sklearn's zero_division=0)
    assert cls.f1_binary([0, 0, 0], [0, 0, 0]) == 0.0
    # predicted positives but no true ones -> TP 0 -> 0.0
    assert cls.f1_binary([1, 1], [0, 0]) == 0.0


def test_mcc_binary_by_hand():
    # (TP·TN − FP·FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (2·1 − 1·1) / sqrt(3·3·2·2) = 1/6
    assert cls.matthews_corrcoef(P, Y) == pytest.approx(1 / 6)
    assert cls.matthews_corrcoef(Y, Y) == pytest.approx(1.0)
    assert cls.matthews_corrcoef([1 - y for y in Y], Y) == pytest.approx(-1.0)


def test_mcc_degenerate_is_zero():
    # All predictions one class (or all labels one class): denominator 0 -> 0.0, not NaN.
    assert cls.matthews_corrcoef([1, 1, 1, 1], [1, 0, 1, 0]) == 0.0
    assert cls.matthews_corrcoef([1, 0, 1, 0], [0, 0, 0, 0]) == 0.0
    assert cls.matthews_corrcoef([1, 1], [1, 1]) == 0.0


def test_mcc_multiclass_by_hand():
    # preds [0,1,2,0,1,2] labels [0,1,2,1,2,0]: correct c=3, s=6, predicted counts [2,2,2], true counts [2,2,2]
    # (c·s − Σp·t) / sqrt((s² − Σp²)(s² − Σt²)) = (18 − 12) / sqrt(24·24) = 0.25
    assert cls.matthews_corrcoef([0, 1, 2, 0, 1, 2], [0, 1, 2, 1, 2, 0]) == pytest.approx(0.25)


def test_pearson_by_hand():
    # x=[1,2,3,4] (mean 2.5) y=[2,4,5,9] (mean 5): dx=[-1.5,-.5,.5,1.5] dy=[-3,-1,0,4]
    # Σdx·dy = 4.5+.5+0+6 = 11, Σdx² = 5, Σdy² = 26 -> 11/sqrt(130)
    assert cls.pearson([1, 2, 3, 4], [2, 4, 5, 9]) == pytest.approx(11 / math.sqrt(130))
    assert cls.pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # constant vector: correlation undefined -> 0.0
    assert cls.pearson([2, 2, 2], [1, 2, 3]) == 0.0


def test_rankdata_average_ties():
    # sorted 10,10,20,20,20,30 -> ranks 1,2 | 3,4,5 | 6 -> averages 1.5 | 4 | 6
    np.testing.assert_allclose(cls.rankdata_average([10, 20, 10, 30, 20, 20]), [1.5, 4, 1.5, 6, 4, 4])


def test_spearman_by_hand():
    # x=[1,2,2,3] -> ranks [1,2.5,2.5,4]; y=[1,3,2,4] -> ranks [1,3,2,4]; both mean 2.5
    # dx=[-1.5,0,0,1.5] dy=[-1.5,.5,-.5,1.5]: Σdxdy=4.5, Σdx²=4.5, Σdy²=5 -> 4.5/sqrt(22.5) = sqrt(0.9)
    assert cls.spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(math.sqrt(0.9))
    # monotone but non-linear: Spearman 1, Pearson < 1
    assert cls.spearman([1, 2, 3], [1, 8, 27]) == pytest.approx(1.0)
    assert cls.pearson([1, 2, 3], [1, 8, 27]) < 0.99
    assert cls.spearman([5, 5, 5], [1, 2, 3]) == 0.0


@pytest.mark.parametrize("fn", [cls.accuracy, cls.f1_binary, cls.matthews_corrcoef, cls.pearson, cls.spearman])
def test_bad_inputs_raise(fn):
    with pytest.raises(ValueError, match="2 predictions but 3 labels"):
        fn([1, 0], [1, 0, 1])
    with pytest.raises(ValueError, match="no examples"):
        fn([], [])
    with pytest.raises(ValueError, match="1-D"):
        fn([[1, 0]], [[1, 0]])


def test_nan_rejected_for_correlations():
    with pytest.raises(ValueError, match=r"predictions\[1\] = nan"):
        cls.pearson([1.0, float("nan"), 2.0], [1, 2, 3])
    with pytest.raises(ValueError, match=r"labels\[0\] = inf"):
        cls.spearman([1.0, 2.0], [float("inf"), 2.0])


def test_against_scipy_oracle():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    y = x + rng.normal(size=200)
    xi = np.round(x * 2)  # many ties
    yi = np.round(y * 2)
    assert cls.pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-12)
    assert cls.spearman(xi, yi) == pytest.approx(stats.spearmanr(xi, yi)[0], abs=1e-12)
    np.testing.assert_allclose(cls.rankdata_average(xi), stats.rankdata(xi, method="average"))
    # MCC of binary labels equals Pearson's phi on the 0/1 vectors.
    p = (x > 0).astype(int)
    t = (y > 0).astype(int)
    assert cls.matthews_corrcoef(p, t) == pytest.approx(stats.pearsonr(p, t)[0], abs=1e-12)
