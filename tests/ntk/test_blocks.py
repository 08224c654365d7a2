"""Blocked evaluation: the output basis walked in blocks gives the same kernel for every block
size, and a small memory budget makes the blocks small (a loop appears in the program)."""

import jax
import numpy as np
import pytest

from ntknas import ntk

from . import zoo
from .test_methods import rel_err

METHODS = ["ntk_vector_products", "structured_derivatives"]
CASES = {c.name: c for c in zoo.all_cases(np.float64)}


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
    assert rel_err(want, zoo.reference_kernel(c.f, c.params, c.x1, c.x2)) < 1e-6


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


def test_block_size_must_be_positive():
    with pytest.raises(ValueError, match="block_size"):
        ntk.ntk_fn(lambda p, x: x @ p, block_size=0)
