"""Rank statistics against scipy on known data; bootstrap intervals; top-k."""

import numpy as np
import pytest
from scipy.stats import kendalltau, spearmanr

from ntknas.compare._stats import rank_correlation, top_k, top_k_overlap


def test_point_estimates_match_scipy_with_ties_and_inf():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(60)
    y = 0.5 * x + rng.standard_normal(60)
    x[:5] = x[5]  # ties
    x[7] = np.inf  # a singular kernel's condition number: ranked, not dropped
    r = rank_correlation(x, y, n_boot=200, seed=1)
    assert r["n"] == 60
    assert r["spearman"] == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    assert r["kendall"] == pytest.approx(kendalltau(x, y).statistic, abs=1e-12)
    assert r["spearman_lo"] < r["spearman"] < r["spearman_hi"]
    assert r["kendall_lo"] < r["kendall"] < r["kendall_hi"]


def test_known_values_and_nan_pairs_dropped():
    x = [1.0, 2.0, 3.0, 4.0, np.nan]
    r = rank_correlation(x, [10.0, 20.0, 30.0, 40.0, 0.0], n_boot=0)
    assert (
        r["n"] == 4 and r["spearman"] == pytest.approx(1.0) and r["kendall"] == pytest.approx(1.0)
    )
    r = rank_correlation([1, 2, 3, 4], [4, 3, 1, 2], n_boot=0)
    assert r["spearman"] == pytest.approx(-0.8) and r["kendall"] == pytest.approx(-2 / 3)
    assert np.isnan(r["spearman_lo"])


def test_bootstrap_is_seeded_and_intervals_shrink_with_n():
    rng = np.random.default_rng(3)
    x = rng.standard_normal(400)
    y = x + rng.standard_normal(400)
    a = rank_correlation(x, y, n_boot=300, seed=5)
    assert a == rank_correlation(x, y, n_boot=300, seed=5)
    assert a != rank_correlation(x, y, n_boot=300, seed=6)
    small = rank_correlation(x[:40], y[:40], n_boot=300, seed=5)
    assert a["spearman_hi"] - a["spearman_lo"] < small["spearman_hi"] - small["spearman_lo"]
    # a vectorized bootstrap Spearman equals scipy's on one resample
    idx = np.random.default_rng(5).integers(0, 400, size=(300, 400))
    rho = [spearmanr(x[i], y[i]).statistic for i in idx]
    assert a["spearman_lo"] == pytest.approx(np.percentile(rho, 2.5), abs=1e-12)
    assert a["spearman_hi"] == pytest.approx(np.percentile(rho, 97.5), abs=1e-12)


def test_bad_input():
    with pytest.raises(ValueError, match="shapes"):
        rank_correlation([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="confidence"):
        rank_correlation([1, 2, 3], [1, 2, 3], confidence=1.5)


def test_top_k_and_overlap_respect_direction():
    a = np.array([5.0, 4.0, 3.0, 2.0, 1.0, np.nan])
    assert top_k(a, 2) == {0, 1}
    assert top_k(a, 2, higher_is_better=False) == {4, 3}
    assert top_k_overlap(a, a, 2) == 1.0
    assert top_k_overlap(a, -a, 2) == 0.0
    assert top_k_overlap(a, -a, 2, b_higher=False) == 1.0
    assert top_k_overlap(a, [1, 9, 8, 0, 0, 0], 2) == 0.5
