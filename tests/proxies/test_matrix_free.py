"""Matrix-free spectra against the exact spectrum of kernels small enough to form."""

import numpy as np
import pytest

from ntknas import ntk
from ntknas.proxies import _matrix_free as mf
from tests.ntk import zoo


@pytest.fixture(scope="module")
def case():
    c = zoo.relu_fcn(np.float64, depth=3, width=32, o=8, n1=4, n2=4)  # a 32x32 kernel matrix
    k = ntk.ntk_fn(c.f, method="jacobian_contraction")(c.x1, None, c.params)
    eig = np.linalg.eigvalsh(np.asarray(ntk.as_matrix(k)))
    assert eig[0] > 1e-3 * eig[-1], "a singular kernel: the condition number test would be void"
    return c, mf.kernel_operator(c.f, c.x1, c.params), eig


def _rel(a, b):
    return abs(a - b) / abs(b)


def test_operator_is_the_kernel_matrix(case):
    c, op, _ = case
    k = np.asarray(ntk.as_matrix(ntk.ntk_fn(c.f)(c.x1, None, c.params)))
    v = np.random.default_rng(1).standard_normal(op.dim)
    np.testing.assert_allclose(op.matvec(v), k @ v, rtol=1e-10)


def test_lanczos_eigenvalues_and_condition_number(case):
    _, op, eig = case
    s = mf.matrix_free_spectrum(op, steps=op.dim)
    assert _rel(s.lambda_min, eig[0]) < 1e-3
    assert _rel(s.lambda_max, eig[-1]) < 1e-3
    assert _rel(s.cond, eig[-1] / eig[0]) < 0.05
    p = eig / eig.sum()
    assert _rel(s.effective_rank, np.exp(-(p * np.log(p)).sum())) < 1e-6
    assert "matrix-free" in s.source


def test_lambda_max_converges_in_few_steps(case):
    _, op, eig = case
    _, hi = mf.extreme_eigenvalues(op, steps=16)
    assert _rel(hi, eig[-1]) < 1e-3


def test_traces(case):
    _, op, eig = case
    assert _rel(mf.exact_trace(op), eig.sum()) < 1e-8
    assert _rel(mf.hutchinson_trace(op, probes=256), eig.sum()) < 0.02


def test_slq_effective_rank(case):
    _, op, eig = case
    p = eig / eig.sum()
    want = np.exp(-(p * np.log(p)).sum())
    got = mf.slq_effective_rank(op, probes=64, steps=16, trace=eig.sum())
    assert _rel(got, want) < 0.2  # Monte Carlo over 64 probes: measured 14% here


def test_pytree_outputs_are_refused():
    with pytest.raises(ValueError, match="one array"):
        mf.kernel_operator(lambda p, x: {"a": x @ p}, np.ones((2, 3)), np.ones((3, 2)))
