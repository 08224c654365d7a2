"""A fail-safe ``auto``: it never picks a method whose compiled peak memory exceeds the budget, it
moves on to the next method on any exception, and ``explain`` says why each was skipped."""

import numpy as np
import pytest

from ntknas import ntk
from ntknas.ntk._auto import peak_bytes
from ntknas.ntk._switches import switched

from . import zoo
from .test_methods import assert_close

METHODS = ["jacobian_contraction", "ntk_vector_products", "structured_derivatives"]


@pytest.fixture(scope="module")
def fcn():
    return zoo.relu_fcn(np.float64)


def _peaks(c, **options):
    return {
        m: peak_bytes(ntk.ntk_fn(c.f, method=m, **options).compile(c.x1, c.x2, c.params))
        for m in METHODS
    }


def test_explain_shows_the_chosen_method_peak_memory(fcn):
    with switched(auto_cache_size=8):
        e = ntk.explain(fcn.f, fcn.x1, fcn.x2, fcn.params)
    assert e.estimates[e.method].peak_bytes > 0
    assert e.estimates[e.method].peak_bytes <= e.budget_bytes
    assert "peak" in str(e) and "memory budget" in str(e)


def test_a_method_over_budget_is_skipped_for_one_that_fits():
    # A CNN where structured derivatives is the fastest but NTK-vector products needs less memory.
    # One block size throughout: the default is derived from the budget, which would make the
    # programs (and so their costs and peaks) differ between the calls below.
    fcn = zoo.cnn(np.float32, padding="VALID", name="cnn_valid")
    fixed = {"block_size": 64}
    peaks = _peaks(fcn, **fixed)
    with switched(auto_cache_size=8):
        fastest = ntk.explain(fcn.f, fcn.x1, fcn.x2, fcn.params, **fixed).method
    smallest = min(peaks, key=peaks.get)
    others = [m for m in METHODS if m != smallest]
    # Make the fastest the one that does not fit: fail every other method but the smallest-peak
    # one, and set the budget between the two peaks.
    fail = tuple(m for m in others if m != fastest)
    assert fastest != smallest, f"{fastest} is both fastest and smallest here: the test is void"
    budget = (peaks[smallest] + peaks[fastest]) / 2
    assert peaks[smallest] < budget < peaks[fastest]
    with switched(auto_cache_size=8, failing=fail):
        e = ntk.explain(fcn.f, fcn.x1, fcn.x2, fcn.params, memory_budget=budget, **fixed)
        assert e.method == smallest, str(e)
        assert "exceeds the memory budget" in e.skipped.get(fastest, ""), str(e)
        got = ntk.ntk_fn(fcn.f, memory_budget=budget, **fixed)(fcn.x1, fcn.x2, fcn.params)
    assert_close(got, zoo.reference_kernel(fcn.f, fcn.params, fcn.x1, fcn.x2), np.float32)


def test_no_method_within_budget_is_a_value_error(fcn):
    with switched(auto_cache_size=8), pytest.raises(ValueError, match="no NTK method fits"):
        ntk.ntk_fn(fcn.f, memory_budget=1000)(fcn.x1, fcn.x2, fcn.params)


def test_any_exception_falls_back_to_the_next_method(fcn):
    with switched(auto_cache_size=8):
        first = ntk.explain(fcn.f, fcn.x1, fcn.x2, fcn.params).method
    with switched(auto_cache_size=8, failing=(first,)):
        e = ntk.explain(fcn.f, fcn.x1, fcn.x2, fcn.params)
        assert e.method != first
        assert e.skipped[first].startswith("error: RuntimeError"), str(e)
        assert "skipped" in str(e)
        got = ntk.ntk_fn(fcn.f)(fcn.x1, fcn.x2, fcn.params)
    assert_close(got, zoo.reference_kernel(fcn.f, fcn.params, fcn.x1, fcn.x2), np.float64)


def test_memory_budget_must_be_positive():
    with pytest.raises(ValueError, match="memory_budget"):
        ntk.ntk_fn(lambda p, x: x @ p, memory_budget=0)


def test_a_kernel_that_fails_when_it_runs_falls_back_to_the_next_method(fcn):
    # The chosen method's executable compiles and fits, then raises as it runs (as XLA's
    # RESOURCE_EXHAUSTED at execution would): the kernel comes from the next method, and explain
    # says why the first was skipped.
    with switched(auto_cache_size=8):
        first = ntk.explain(fcn.f, fcn.x1, fcn.x2, fcn.params).method
    want = zoo.reference_kernel(fcn.f, fcn.params, fcn.x1, fcn.x2)
    with switched(auto_cache_size=8, failing_at_run=(first,)):
        kernel_fn = ntk.ntk_fn(fcn.f)
        got = kernel_fn(fcn.x1, fcn.x2, fcn.params)
        e = ntk.explain(fcn.f, fcn.x1, fcn.x2, fcn.params)
        again = kernel_fn(fcn.x1, fcn.x2, fcn.params)  # the replacement executable, no retry
        with pytest.raises(RuntimeError, match="RESOURCE_EXHAUSTED"):
            ntk.ntk_fn(fcn.f, method=first)(fcn.x1, fcn.x2, fcn.params)  # no fallback asked for
    assert e.method != first, str(e)
    assert e.skipped[first].startswith("running failed: "), str(e)
    assert "RESOURCE_EXHAUSTED" in e.skipped[first]
    assert "running failed" in str(e)
    assert_close(got, want, np.float64)
    assert_close(again, want, np.float64)


def test_every_method_failing_when_it_runs_is_a_value_error_naming_each(fcn):
    with (
        switched(auto_cache_size=8, failing_at_run=tuple(METHODS)),
        pytest.raises(ValueError, match="no NTK method fits") as raised,
    ):
        ntk.ntk_fn(fcn.f)(fcn.x1, fcn.x2, fcn.params)
    costed = [m for m in METHODS if f"{m}: running failed" in str(raised.value)]
    assert len(costed) >= 2, str(raised.value)  # every method auto could cost was run and failed
    assert isinstance(raised.value.__cause__, RuntimeError)
