"""Precision and dtypes: full float32 contractions whatever the global matmul setting, an explicit
``precision`` option, and bfloat16 parameters (kernel accumulated in float32)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntknas import ntk

from . import zoo
from .test_methods import rel_err

METHODS = ["jacobian_contraction", "ntk_vector_products", "structured_derivatives"]


def _dot_precisions(kernel_fn, c):
    """The precision of every dot_general in the traced kernel (StableHLO text)."""
    text = jax.jit(lambda a, b, p: kernel_fn(a, b, p)).lower(c.x1, c.x2, c.params).as_text()
    dots = [line for line in text.splitlines() if "dot_general" in line]
    assert dots, "no dot_general in the kernel: the test could not fail"
    return [
        line.split("precision = ")[1].split("]")[0] if "precision" in line else "" for line in dots
    ]


@pytest.mark.parametrize("method", METHODS)
def test_contractions_are_full_float32_under_a_bfloat16_global_setting(method):
    c = zoo.relu_fcn(np.float32)
    kernel_fn = ntk.ntk_fn(c.f, method=method)
    with jax.default_matmul_precision("bfloat16"):
        precisions = _dot_precisions(kernel_fn, c)
        got = kernel_fn(c.x1, c.x2, c.params)
    assert all(p == "[HIGHEST, HIGHEST" for p in precisions), precisions
    c64 = zoo.relu_fcn(np.float64)
    want = zoo.reference_kernel(c64.f, c64.params, c64.x1, c64.x2)
    # Full float32 on every backend (TF32 or bfloat16 passes would give ~1e-3).
    assert rel_err(got, want) < 1e-5, rel_err(got, want)


def test_the_precision_option_is_honoured():
    c = zoo.relu_fcn(np.float32)
    fast = ntk.ntk_fn(c.f, method="jacobian_contraction", precision="bfloat16")
    assert all(p == "[DEFAULT, DEFAULT" for p in _dot_precisions(fast, c))


def test_unknown_precision_names_the_choices():
    with pytest.raises(ValueError, match="unknown precision 'fp8'.*'highest'"):
        ntk.ntk_fn(lambda p, x: x @ p, precision="fp8")


@pytest.mark.parametrize("method", ["auto", *METHODS])
def test_bfloat16_params_give_a_float32_kernel(method):
    c = zoo.relu_fcn(np.float32)
    to16 = lambda t: jax.tree.map(lambda a: a.astype(jnp.bfloat16), t)  # noqa: E731
    params, x1, x2 = to16(c.params), to16(c.x1), to16(c.x2)
    got = ntk.ntk_fn(c.f, method=method)(x1, x2, params)
    assert got.dtype == jnp.float32
    # The kernel of f at the bfloat16 values, computed in float32 (not in bfloat16, ~1e-2).
    to64 = lambda t: jax.tree.map(lambda a: np.asarray(a, np.float64), t)  # noqa: E731
    want = zoo.reference_kernel(c.f, to64(params), to64(x1), to64(x2))
    assert rel_err(got, want) < 1e-5, rel_err(got, want)
