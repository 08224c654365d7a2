"""Rank statistics: Spearman and Kendall with bootstrap intervals, top-k agreement, rank sums."""

from __future__ import annotations

import numpy as np

from ..proxies import rank_sum as rank_sum  # the aggregation lives with the proxies


def _pairs(x, y) -> tuple[np.ndarray, np.ndarray]:
    """Float arrays without the pairs where either is NaN (inf is kept: it ranks last/first)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"need two 1-D arrays of one length, got shapes {x.shape} and {y.shape}")
    keep = ~(np.isnan(x) | np.isnan(y))
    return x[keep], y[keep]


def _spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's ρ of each row pair of (B, n) arrays: Pearson of average ranks (scipy's)."""
    from scipy.stats import rankdata

    rx, ry = rankdata(x, axis=1), rankdata(y, axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    denom = np.sqrt((rx * rx).sum(axis=1) * (ry * ry).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (rx * ry).sum(axis=1) / denom, np.nan)


def rank_correlation(
    x, y, *, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0
) -> dict[str, float]:
    """Spearman's ρ and Kendall's τ-b of ``x`` against ``y`` with percentile bootstrap intervals.

    The bootstrap resamples (x, y) pairs with replacement ``n_boot`` times from a generator seeded
    with ``seed``, so the intervals are reproducible. NaN pairs are dropped; inf is ranked.

    Returns:
      ``n``, ``spearman``, ``spearman_lo``, ``spearman_hi``, ``kendall``, ``kendall_lo``,
      ``kendall_hi`` (the point estimates are scipy's on the full data).

    Raises:
      ValueError: arrays of different lengths, or ``confidence`` outside (0, 1).
    """
    from scipy.stats import kendalltau, spearmanr

    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence={confidence!r} must be in (0, 1)")
    x, y = _pairs(x, y)
    n = len(x)
    out = {"n": float(n)}
    nan = float("nan")
    if n < 3:
        return {**out, **dict.fromkeys(("spearman", "kendall"), nan), **_ci(None, None)}
    out["spearman"] = float(spearmanr(x, y).statistic)
    out["kendall"] = float(kendalltau(x, y).statistic)
    if n_boot <= 0:
        return {**out, **_ci(None, None)}
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    rho = _spearman_rows(x[idx], y[idx])
    tau = np.array([kendalltau(x[i], y[i]).statistic for i in idx])
    alpha = 100 * (1 - confidence) / 2
    return {**out, **_ci(rho, tau, alpha)}


def _ci(rho, tau, alpha=2.5) -> dict[str, float]:
    nan = float("nan")
    if rho is None:
        return {k: nan for k in ("spearman_lo", "spearman_hi", "kendall_lo", "kendall_hi")}
    lo, hi = alpha, 100 - alpha
    return {
        "spearman_lo": float(np.nanpercentile(rho, lo)),
        "spearman_hi": float(np.nanpercentile(rho, hi)),
        "kendall_lo": float(np.nanpercentile(tau, lo)),
        "kendall_hi": float(np.nanpercentile(tau, hi)),
    }


def top_k(values, k: int, higher_is_better: bool = True) -> set[int]:
    """Indices of the best ``k`` values (NaN never counts as best; ties broken by index)."""
    v = np.asarray(values, dtype=np.float64)
    v = np.where(np.isnan(v), -np.inf, v if higher_is_better else -v)
    return set(np.argsort(-v, kind="stable")[:k].tolist())


def top_k_overlap(a, b, k: int = 10, a_higher: bool = True, b_higher: bool = True) -> float:
    """The share of ``a``'s top ``k`` that is also in ``b``'s top ``k`` (1.0: the same picks)."""
    k = min(k, len(np.asarray(a)))
    if k < 1:
        return float("nan")
    return len(top_k(a, k, a_higher) & top_k(b, k, b_higher)) / k
