"""Blocked evaluation: the output basis walked in blocks gives the same kernel for every block
size, a small memory budget makes the blocks small (a loop appears in the program), and the
default block size is the largest whose compiled peak fits the budget."""

import types

import jax
import numpy as np
import pytest

from ntknas import ntk
from ntknas.ntk._compiled import UNBLOCKED, fit_blocks, fit_kernel, peak_bytes
from ntknas.ntk._kernel import NtkMethod, Options
from ntknas.ntk._switches import switched

from . import zoo
from .test_methods import rel_err

METHODS = ["ntk_vector_products", "structured_derivatives"]
CASES = {c.name: c for c in zoo.all_cases(np.float64)}
WIDE_OUT_FCN = zoo.relu_fcn(np.float64, o=32, width=32, depth=3)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", ["relu_fcn", "cnn_stride2", "transformer_block", "batch_coupled"])
def test_every_block_size_gives_the_same_kernel(method, name):
    c = CASES[name]
    whole = ntk.ntk_fn(c.f, method=method, vmap_axes=c.vmap_axes, block_size=10**9)
    want = whole(c.x1, c.x2, c.params)
    o = jax.eval_shape(c.f, c.params, c.x1).shape[-1]
    for block in (1, 3, o):
        blocked = ntk.ntk_fn(c.f, method=method, vmap_axes=c.vmap_axes, block_size=block)
        got = blocked(c.x1, c.x2, c.params)
        assert rel_err(got, want) < 1e-12, (block, rel_err(got, want))
    assert rel_err(want, zoo.case_reference(c)) < 1e-6


@pytest.mark.parametrize("method", METHODS)
def test_a_small_memory_budget_walks_the_basis_in_a_loop(method):
    c = CASES["relu_fcn"]

    def program(**kw):
        kernel_fn = ntk.ntk_fn(c.f, method=method, **kw)
        return jax.jit(kernel_fn).lower(c.x1, c.x2, c.params).as_text()

    assert "stablehlo.while" not in program()
    assert "stablehlo.while" in program(memory_budget=2000)
    small = ntk.ntk_fn(c.f, method=method, memory_budget=2000)(c.x1, c.x2, c.params)
    assert rel_err(small, ntk.ntk_fn(c.f, method=method)(c.x1, c.x2, c.params)) < 1e-12


@pytest.mark.parametrize("method", ["auto", *METHODS])
def test_flops_count_every_block(method):
    # XLA's cost analysis counts a loop's body once: a blocked program's own count is one block's,
    # so KernelFn.flops must count the program without blocks, whatever block size runs.
    c = WIDE_OUT_FCN
    whole = ntk.ntk_fn(c.f, method=method, block_size=10**9)
    blocked = ntk.ntk_fn(c.f, method=method, block_size=4)
    want = whole.flops(c.x1, c.x2, c.params)
    compiled = blocked.compile(c.x1, c.x2, c.params)
    one_block = compiled.cost_analysis()
    one_block = (one_block[0] if isinstance(one_block, list) else one_block)["flops"]
    assert want > 1.2 * one_block  # 32 outputs in blocks of 4: the loop hides FLOPs
    if method == "ntk_vector_products":  # all its FLOPs are in the loop
        assert want > 4 * one_block
    assert blocked.flops(c.x1, c.x2, c.params) == pytest.approx(want, rel=1e-9)
    assert whole.compile(c.x1, c.x2, c.params) is not None
    assert whole.flops(c.x1, c.x2, c.params) == pytest.approx(want, rel=0.5)  # compiled count


def test_block_size_must_be_positive():
    with pytest.raises(ValueError, match="block_size"):
        ntk.ntk_fn(lambda p, x: x @ p, block_size=0)


# --- block sizes from the compiled program's memory analysis ----------------------------------


class _Program:
    """A stand-in for a compiled program: its memory analysis says ``peak`` bytes."""

    def __init__(self, block, peak):
        self.block, self.peak = block, peak

    def memory_analysis(self):
        if self.peak is None:
            raise NotImplementedError("no memory analysis on this backend")
        return types.SimpleNamespace(
            argument_size_in_bytes=0,
            output_size_in_bytes=0,
            temp_size_in_bytes=self.peak,
            alias_size_in_bytes=0,
        )


def _fit(peak_of, budget, basis):
    asked = []

    def compile_at(block):
        asked.append(block)
        size = basis if block == UNBLOCKED else block
        return _Program(block, None if block is None else peak_of(size))

    return fit_blocks(compile_at, budget, basis), asked


@pytest.mark.parametrize("budget", [1_500, 5_000, 20_000, 99_000])
def test_the_fit_finds_the_largest_block_within_the_budget_when_peaks_are_linear(budget):
    fitted, asked = _fit(lambda b: 1_000 + 100 * b, budget, basis=1_000)
    want = (budget - 1_000) // 100
    assert fitted.block_size == want and fitted.compiled.block == want
    assert fitted.peak_bytes <= budget
    assert fitted.compiles == len(asked) <= 3  # every vector at once, one vector, the fit


def test_the_fit_stays_within_the_budget_when_peaks_are_not_linear():
    # Peaks that jump (a different fusion above 40 vectors) and grow faster than linearly: the
    # interpolation overshoots, the verification catches it, and the fit still fits.
    peak = lambda b: 1_000 + b * b + (50_000 if b > 40 else 0)  # noqa: E731
    for budget in (2_000, 2_600, 3_000, 40_000):
        fitted, asked = _fit(peak, budget, basis=200)
        b = fitted.block_size
        assert peak(b) <= budget and fitted.peak_bytes == peak(b), (budget, asked)
        best = max(k for k in range(1, 200) if peak(k) <= budget)
        assert b >= best / 2, (budget, asked)
        assert len(asked) <= 6


def test_the_fit_compiles_once_when_everything_fits_or_no_basis_is_walked():
    for budget, basis in ((10**9, 100), (10, 1)):
        fitted, asked = _fit(lambda b: 1_000 + 100 * b, budget, basis)
        assert asked == [UNBLOCKED] and fitted.block_size == UNBLOCKED


def test_blocks_of_one_over_the_budget_return_the_lower_peak():
    fitted, _ = _fit(lambda b: 1_000 + 100 * b, 500, basis=100)
    assert fitted.block_size == 1 and fitted.peak_bytes == 1_100
    fitted, _ = _fit(lambda b: 1_000 if b == 100 else 2_000, 500, basis=100)  # blocks cost more
    assert fitted.block_size == UNBLOCKED


def test_without_memory_analysis_the_blocks_come_from_the_estimate():
    fitted, asked = _fit(lambda b: None, 1_000, basis=100)
    assert asked == [UNBLOCKED, None]
    assert fitted.block_size is None and fitted.compiled.block is None


def test_a_program_that_fails_to_compile_at_every_vector_at_once_is_fitted_in_blocks():
    def compile_at(block):
        if block == UNBLOCKED:
            raise RuntimeError("RESOURCE_EXHAUSTED while compiling")
        return _Program(block, 1_000 + 100 * block)

    fitted = fit_blocks(compile_at, 5_000, basis=1_000)
    assert fitted.block_size == 40


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", ["wide_out_fcn", "cnn_stride2"])
def test_the_default_blocks_keep_the_compiled_peak_within_a_tiny_budget(method, name):
    c = WIDE_OUT_FCN if name == "wide_out_fcn" else CASES[name]

    def peak(**kw):
        return peak_bytes(ntk.ntk_fn(c.f, method=method, **kw).compile(c.x1, c.x2, c.params))

    one, full = peak(block_size=1), peak(block_size=UNBLOCKED)
    budget = (one + full) / 2  # at least one of the two fits
    kernel_fn = ntk.ntk_fn(c.f, method=method, memory_budget=budget)
    assert peak_bytes(kernel_fn.compile(c.x1, c.x2, c.params)) <= budget
    got = kernel_fn(c.x1, c.x2, c.params)
    want = ntk.ntk_fn(c.f, method=method, block_size=UNBLOCKED)(c.x1, c.x2, c.params)
    assert rel_err(got, want) < 1e-12
    assert rel_err(got, zoo.case_reference(c)) < 1e-6
    if name == "wide_out_fcn" and method == "ntk_vector_products":  # blocks hold most memory
        assert full > 2 * one
        fitted = fit_kernel(
            c.f, NtkMethod(method), Options(memory_budget=budget), (c.x1, c.x2, c.params)
        )
        assert 1 < fitted.block_size < 32, fitted  # the budget is used, not just one vector


def test_explain_shows_the_blocks_auto_compiled_the_choice_with():
    c = WIDE_OUT_FCN
    with switched(auto_cache_size=8, failing=("structured_derivatives", "jacobian_contraction")):
        e = ntk.explain(c.f, c.x1, c.x2, c.params, memory_budget=10**9)
        assert e.estimates[e.method].block_size == UNBLOCKED and "blocks of" not in str(e)
        one = ntk.ntk_fn(c.f, block_size=1).compile(c.x1, c.x2, c.params)
        full = ntk.ntk_fn(c.f, block_size=UNBLOCKED).compile(c.x1, c.x2, c.params)
        budget = (peak_bytes(one) + peak_bytes(full)) / 2
        e = ntk.explain(c.f, c.x1, c.x2, c.params, memory_budget=budget)
        b = e.estimates[e.method].block_size
        assert e.method == "ntk_vector_products" and 1 < b < 32, str(e)
        assert e.estimates[e.method].peak_bytes <= budget
        assert f"in blocks of {b} basis vectors" in str(e)
        got = ntk.ntk_fn(c.f, memory_budget=budget)(c.x1, c.x2, c.params)
        traced = jax.jit(ntk.ntk_fn(c.f, memory_budget=budget))(c.x1, c.x2, c.params)
    want = zoo.case_reference(c)
    assert rel_err(got, want) < 1e-6 and rel_err(traced, want) < 1e-6
