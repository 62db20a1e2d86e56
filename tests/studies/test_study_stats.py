"""``rnnkit.studies.stats`` on synthetic numbers: summaries, Welch's t against SciPy, the bootstrap fallback."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
from scipy import stats as scipy_stats

from rnnkit.studies import stats


def test_summary_is_mean_sample_sd_min_max():
    s = stats.summarize([0.80, 0.82, 0.81, 0.79])
    assert s["mean"] == pytest.approx(0.805)
    assert s["sd"] == pytest.approx(np.std([0.80, 0.82, 0.81, 0.79], ddof=1))
    assert (s["min"], s["max"], s["n"]) == (0.79, 0.82, 4)
    assert stats.summarize([0.5]) == {"mean": 0.5, "sd": 0.0, "min": 0.5, "max": 0.5, "n": 1}
    with pytest.raises(ValueError):
        stats.summarize([])


@pytest.mark.parametrize(
    "a, b",
    [
        ([0.81, 0.80, 0.82], [0.78, 0.79, 0.775]),
        ([0.81, 0.80, 0.82, 0.815, 0.79], [0.80, 0.70, 0.75]),  # unequal sizes and variances
        ([1.0, 2.0], [1.5, 1.4, 1.6, 1.55]),
    ],
)
def test_welch_t_and_its_p_value_equal_scipys(a, b):
    t, df = stats.welch_t(a, b)
    ref = scipy_stats.ttest_ind(a, b, equal_var=False)
    assert t == pytest.approx(ref.statistic, rel=1e-12)
    assert df == pytest.approx(ref.df, rel=1e-12)
    result = stats.compare_two(a, b)
    assert result["method"] == "welch-t"
    assert result["p"] == pytest.approx(ref.pvalue, rel=1e-9)
    assert result["difference"] == pytest.approx(np.mean(a) - np.mean(b))
    assert result["significant"] == (ref.pvalue < 0.05)
    assert "Welch's t-test (scipy)" in stats.describe_test(result, "A", "B", "validation accuracy")


def test_a_clear_difference_is_significant_and_noise_is_not():
    rng = np.random.default_rng(0)
    base = rng.normal(0.8, 0.005, 5)
    assert stats.compare_two(base + 0.05, base)["significant"]
    assert not stats.compare_two(base, base[::-1] + 1e-4)["significant"]


def test_zero_variance_sides():
    assert stats.welch_t([0.5, 0.5], [0.4, 0.4]) == (math.inf, pytest.approx(math.nan, nan_ok=True))
    assert stats.compare_two([0.5, 0.5], [0.4, 0.4])["p"] == 0.0
    assert stats.compare_two([0.5, 0.5], [0.5, 0.5])["p"] == 1.0


def test_one_seed_is_no_test():
    result = stats.compare_two([0.8], [0.7, 0.75])
    assert result["method"] == "none" and "two seeds" in stats.describe_test(result, "A", "B", "accuracy")


def test_without_scipy_a_seeded_bootstrap_interval(monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy", None)  # ``import scipy`` now fails, as when it is not installed
    a, b = [0.81, 0.80, 0.82, 0.815], [0.78, 0.79, 0.775, 0.785]
    result = stats.compare_two(a, b)
    assert result["method"] == "bootstrap"
    lo, hi = result["ci"]
    assert lo < np.mean(a) - np.mean(b) < hi and lo > 0 and result["significant"]
    assert stats.compare_two(a, b)["ci"] == result["ci"]  # seeded: the same interval every time
    assert not stats.compare_two([0.8, 0.7, 0.9], [0.82, 0.72, 0.88])["significant"]
    assert "bootstrap 95% interval (numpy" in stats.describe_test(result, "A", "B", "accuracy")


def test_the_table_of_synthetic_results():
    from rnnkit.studies.compare import markdown_table

    def row(name, val, test, params, trained):
        return {"setting": name, "validation": stats.summarize(val), "test": stats.summarize(test), "seeds": [0, 1, 2],
                "parameters": params, "trainable_parameters": trained, "seconds_per_epoch": 1.234}  # fmt: skip

    gru, lstm = [0.80, 0.82, 0.81], [0.78, 0.79, 0.77]
    results = {"metric": "accuracy", "mode": "max", "seeds": [0, 1, 2],
               "settings": [row("cell=gru", gru, [0.7, 0.8, 0.9], 100, 100), row("cell=lstm", lstm, lstm, 500, 120)],
               "test_between_best_two": {"summary": "cell=gru vs cell=lstm: ..."}}  # fmt: skip
    lines = markdown_table(results).splitlines()
    assert lines[0].startswith("Ranked by validation accuracy (maximum is best; mean ± sd over seeds 0, 1, 2)")
    assert lines[4] == (
        "| 1 | cell=gru | 0.8100 ± 0.0100 | 0.8000 | 0.8200 | 0.8000 ± 0.1000 | 0.7000 | 0.9000 | 0, 1, 2 | 100 "
        "| 1.23 |"
    )
    assert "| 2 | cell=lstm | 0.7800 ± 0.0100 |" in lines[5] and "| 500 (120 trained) |" in lines[5]
    assert lines[-1] == "cell=gru vs cell=lstm: ..."
