"""rnnkit.metrics.forecast against values worked out by hand (and, for the decomposition and the
autocorrelations, against statsmodels' independent implementations)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rnnkit.metrics import forecast as fm

X = [1.0, 3.0, 2.0, 5.0, 4.0]  # naive in-sample MAE: |2|,|1|,|3|,|1| -> 1.75; lag 2: |1|,|2|,|2| -> 5/3


def test_smape_by_hand():
    # 200/2 * (10/210 + 20/380)
    assert fm.smape([100, 200], [110, 180]) == pytest.approx(100 * (10 / 210 + 20 / 380))
    assert fm.smape([0, 0], [0, 0]) == 0.0  # 0/0 terms: a perfect forecast of zero
    assert fm.smape([0, 10], [5, 10]) == pytest.approx(100.0)  # (200 + 0) / 2
    assert fm.smape([-10], [10]) == pytest.approx(200.0)  # the bound
    with pytest.raises(ValueError, match="the forecast has 3 points, the actuals 2"):
        fm.smape([1, 2], [1, 2, 3])


def test_mape_skips_zero_actuals():
    assert fm.mape([100, 0, 200], [110, 5, 180]) == pytest.approx(10.0)  # (10% + 10%) / 2
    assert math.isnan(fm.mape([0, 0], [1, 2]))


def test_mase_and_its_scale_by_hand():
    assert fm.mase_scale(X, 1) == pytest.approx(1.75)
    assert fm.mase_scale(X, 2) == pytest.approx(5 / 3)
    assert fm.mase([6, 7], [5, 9], X, 1) == pytest.approx(1.5 / 1.75)
    assert fm.mase([6, 7], [5, 9], X, 2) == pytest.approx(0.9)
    assert fm.mase_scale(X, 12) == pytest.approx(1.75)  # shorter than a period: the naive scale
    assert math.isnan(fm.mase([1.0], [2.0], [3.0, 3.0, 3.0]))  # constant history: no scale
    assert math.isnan(fm.mase_scale([3.0]))
    with pytest.raises(ValueError, match="period must be >= 1"):
        fm.mase_scale(X, 0)


def test_owa_and_averages():
    assert fm.owa(10.0, 1.0, 20.0, 0.5) == pytest.approx(0.5 * (0.5 + 2.0))
    assert fm.owa(13.0, 0.9, 13.0, 0.9) == pytest.approx(1.0)
    assert math.isnan(fm.owa(1.0, 1.0, 0.0, 1.0))
    assert fm.mean_ignoring_nan([1.0, float("nan"), 3.0, float("inf")]) == pytest.approx(2.0)
    assert math.isnan(fm.mean_ignoring_nan([float("nan")]))


def test_pinball_and_quantile_loss_by_hand():
    # errors y - f = 2, -3 at q = 0.9: max(1.8, -0.2) = 1.8, max(-2.7, 0.3) = 0.3
    assert fm.pinball_loss([10, 10], [8, 13], 0.9) == pytest.approx(1.05)
    assert fm.pinball_loss([10, 10], [8, 13], 0.5) == pytest.approx(1.25)  # half the absolute error
    both = fm.quantile_loss([10, 10], {0.9: [8, 13], 0.5: [8, 13]}, scale=2.0)
    assert both == pytest.approx((1.05 + 1.25) / 2 / 2.0)
    with pytest.raises(ValueError, match="quantile level must lie in"):
        fm.pinball_loss([1], [1], 1.0)


def test_coverage_and_msis_by_hand():
    assert fm.coverage([1, 5, 10], [0, 6, 10], [2, 7, 10]) == pytest.approx(2 / 3)  # ends count as inside
    # widths 2, 1, 1; y=7 above U=6 by 1 and y=3 below L=4 by 1, each costing 2/0.2 = 10
    assert fm.msis([6, 7, 3], [5, 5, 4], [7, 6, 5], X, 1, alpha=0.2) == pytest.approx(24 / 3 / 1.75)
    # M4's default alpha 0.05 (95% interval): misses cost 40 each
    assert fm.msis([6, 7, 3], [5, 5, 4], [7, 6, 5], X, 1) == pytest.approx((2 + 41 + 41) / 3 / 1.75)
    assert fm.msis([6], [5], [7], X) == pytest.approx(2 / 1.75)  # inside: the width alone


def test_seasonal_indices_by_hand_even_and_odd_period():
    # m = 2: the 2x2 moving average of 1,3,1,3,... is 2 everywhere it exists; ratios 0.5 and 1.5
    assert fm.seasonal_indices([1, 3, 1, 3, 1, 3], 2) == pytest.approx([0.5, 1.5])
    # m = 3: the 3-point average of 1,2,3,... is 2; ratios 0.5, 1, 1.5 by position t % 3
    assert fm.seasonal_indices([1, 2, 3, 1, 2, 3], 3) == pytest.approx([0.5, 1.0, 1.5])
    with pytest.raises(ValueError, match="two full periods"):
        fm.seasonal_indices([1, 2, 3], 2)


@pytest.mark.parametrize("m", [4, 12])
def test_seasonal_indices_match_statsmodels_classical_decomposition(m):
    from statsmodels.tsa.seasonal import seasonal_decompose

    rng = np.random.default_rng(m)
    t = np.arange(5 * m + 3)
    x = (50 + t) * (1 + 0.3 * np.sin(2 * np.pi * t / m)) * rng.uniform(0.95, 1.05, t.size)
    expected = seasonal_decompose(x, model="multiplicative", period=m).seasonal[:m]
    assert fm.seasonal_indices(x, m) == pytest.approx(expected, rel=1e-10)
    assert fm.seasonal_indices(x, m).mean() == pytest.approx(1.0)


def test_seasonality_test_is_m4s_90_percent_acf_test():
    from statsmodels.tsa.stattools import acf

    rng = np.random.default_rng(0)
    t = np.arange(60)
    seasonal = 100 + 10 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 1, t.size)
    noise = 100 + rng.normal(0, 1, t.size)
    assert fm.seasonality_test(seasonal, 12) is True
    assert fm.seasonality_test(noise, 12) is False
    assert fm.seasonality_test(seasonal[:35], 12) is False  # fewer than 3 periods: never seasonal
    assert fm.seasonality_test(seasonal, 1) is False
    assert fm.seasonality_test(np.full(60, 5.0), 12) is False  # constant
    for x in (seasonal, noise, rng.normal(size=40).cumsum()):  # the rule, with statsmodels' acf
        r = acf(x, nlags=12, fft=False)[1:]
        limit = 1.645 * math.sqrt((1 + 2 * np.sum(r[:11] ** 2)) / x.size)
        assert fm.seasonality_test(x, 12) is bool(abs(r[11]) > limit)


def test_deseasonalise_and_future_indices_keep_the_phase():
    rng = np.random.default_rng(1)
    t = np.arange(50)  # 50 = 4 * 12 + 2: the forecast starts at position 2 of the cycle
    x = (100 + t) * (1 + 0.2 * np.cos(2 * np.pi * t / 12)) * rng.uniform(0.99, 1.01, t.size)
    des, s = fm.deseasonalise(x, 12)
    indices = fm.seasonal_indices(x, 12)
    assert des * s == pytest.approx(x)
    assert s[:12] == pytest.approx(indices)
    assert fm.future_indices(x, 12, 5) == pytest.approx(indices[[2, 3, 4, 5, 6]])
    flat = 100 + rng.normal(0, 1, 50)  # not seasonal: unchanged, indices one
    des, s = fm.deseasonalise(flat, 12)
    assert des == pytest.approx(flat) and np.all(s == 1.0) and np.all(fm.future_indices(flat, 12, 3) == 1.0)


def test_zeros_at_one_position_of_the_cycle_mean_no_deseasonalisation():
    x = np.tile([0.0, 50.0, 100.0, 50.0], 6)  # strongly seasonal, but an index of 0 cannot divide
    assert fm.seasonality_test(x, 4)
    des, s = fm.deseasonalise(x, 4)
    assert np.all(s == 1.0) and des == pytest.approx(x)
