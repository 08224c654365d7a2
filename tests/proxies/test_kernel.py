"""Proxies against numpy: condition number, trace, pseudo-NTK variants, and the edge cases."""

import math

import numpy as np
import pytest

from ntknas import proxies


def _psd(m, rng, rank=None):
    a = rng.standard_normal((m, rank or m))
    return a @ a.T + (0.0 if rank else 0.1 * np.eye(m))


def test_spectrum_matches_numpy():
    rng = np.random.default_rng(0)
    k = _psd(12, rng)
    s = proxies.spectrum(k)
    eig = np.linalg.eigvalsh(k)
    np.testing.assert_allclose(s.eigenvalues, eig, rtol=1e-10)
    assert s.cond == pytest.approx(eig[-1] / eig[0], rel=1e-10)
    assert s.trace == pytest.approx(np.trace(k), rel=1e-12)


def test_singular_kernel_has_infinite_condition_number():
    rng = np.random.default_rng(1)
    k = _psd(10, rng, rank=3)  # rank 3: seven eigenvalues are round-off
    assert proxies.spectrum(k).cond == math.inf
    assert proxies.spectrum(np.zeros((4, 4))).cond == math.inf
    # float32 round-off: a float32 kernel with cond ~ 1e9 is singular to working precision
    k32 = np.diag([1.0, 1e-9]).astype(np.float32)
    assert proxies.spectrum(k32).cond == math.inf
    assert proxies.spectrum(k32.astype(np.float64)).cond == pytest.approx(1e9)


def test_non_finite_kernel_is_an_error_not_a_nan():
    k = np.eye(3)
    k[0, 1] = np.nan
    with pytest.raises(proxies.NonFiniteKernelError, match="non-finite"):
        proxies.spectrum(k)
    with pytest.raises(ValueError, match="square"):
        proxies.spectrum(np.ones((2, 3)))


def test_kernel_proxies_full_and_pseudo():
    rng = np.random.default_rng(2)
    n, o = 3, 4
    jac = rng.standard_normal((n, o, 50))  # per-example Jacobians: (N, O, P)
    k = np.einsum("aip,bjp->abij", jac, jac)  # (N, N, O, O)
    out = proxies.kernel_proxies(k, n_params=50)
    full = jac.reshape(n * o, 50) @ jac.reshape(n * o, 50).T
    eig = np.linalg.eigvalsh(full)
    assert out["ntk_cond"] == pytest.approx(eig[-1] / eig[0], rel=1e-8)
    assert out["ntk_trace"] == pytest.approx(np.trace(full), rel=1e-12)
    assert out["ntk_trace_per_param"] == pytest.approx(np.trace(full) / 50, rel=1e-12)
    assert out["ntk_eig_min"] == pytest.approx(eig[0], rel=1e-8)
    expected = {
        "pntk_trace": np.einsum("aip,bip->ab", jac, jac),
        "pntk_logit": jac[:, 0] @ jac[:, 0].T,
        "pntk_sum": jac.sum(1) @ jac.sum(1).T,
    }
    for prefix, kk in expected.items():
        e = np.linalg.eigvalsh(kk)
        assert out[f"{prefix}_cond"] == pytest.approx(e[-1] / e[0], rel=1e-8), prefix
        assert out[f"{prefix}_trace"] == pytest.approx(np.trace(kk), rel=1e-10), prefix
    kernel_families = {n for n, p in proxies.PROXIES.items() if p.family != "cost"}
    assert set(out) == kernel_families == set(proxies.PROXIES) - {"params", "flops"}


def test_one_eigendecomposition_of_the_full_kernel(monkeypatch):
    """The full (N·O)² spectrum is taken once per kernel (plus its correlation matrix's), and the
    scale-free proxies read from it equal those of normalized_proxies alone."""
    import scipy.linalg

    rng = np.random.default_rng(4)
    n, o = 3, 2
    jac = rng.standard_normal((n, o, 20))
    k = np.einsum("aip,bjp->abij", jac, jac)
    sizes = []
    eigvalsh = scipy.linalg.eigvalsh

    def counting(m, **kw):
        sizes.append(m.shape[0])
        return eigvalsh(m, **kw)

    monkeypatch.setattr(scipy.linalg, "eigvalsh", counting)
    out = proxies.kernel_proxies(k, n_params=20)
    assert sizes.count(n * o) == 2  # the full kernel and its correlation matrix
    assert sizes.count(n) == 3  # one per pseudo-NTK
    alone = proxies.normalized_proxies(k)
    for name, value in alone.items():
        assert out[name] == value, name
