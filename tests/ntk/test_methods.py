"""Every NTK method against the float64 explicit-Jacobian reference, on the whole zoo."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntknas import ntk

from . import zoo

METHODS = ["jacobian_contraction", "ntk_vector_products", "auto"]
RTOL = {np.float64: 1e-6, np.float32: 1e-3}  # one per-dtype table for every comparison
AXES = [
    pytest.param((), (), id="full"),
    pytest.param((-1,), (), id="trace-1"),
    pytest.param((), (-1,), id="diag-1"),
]


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30)


def assert_close(got, want, dtype):
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert g.shape == w.shape, (g.shape, w.shape)
        assert np.all(np.isfinite(g))
        assert np.linalg.norm(w) > 0, "degenerate reference: the test could not fail"
        assert rel_err(g, w) < RTOL[dtype], rel_err(g, w)


CASES64 = {c.name: c for c in zoo.all_cases(np.float64)}
CASES32 = {c.name: c for c in zoo.all_cases(np.float32)}
MULTI_AXIS = zoo.multi_axis_output(np.float64)


def _check_float64(method, name, trace_axes, diagonal_axes):
    c = CASES64[name]
    kernel_fn = ntk.ntk_fn(
        c.f,
        method=method,
        trace_axes=trace_axes,
        diagonal_axes=diagonal_axes,
        vmap_axes=c.vmap_axes,
    )
    got = kernel_fn(c.x1, c.x2, c.params)
    assert_close(got, zoo.case_reference(c, trace_axes, diagonal_axes), np.float64)


@pytest.mark.parametrize("method", ["jacobian_contraction", "ntk_vector_products"])
@pytest.mark.parametrize("name", sorted(CASES64))
def test_float64_against_reference(method, name):
    _check_float64(method, name, (), ())


# auto runs one of the methods above (or structured derivatives, checked in tests/ntk/structured):
# a sample of architectures checks that its dispatch and compiled-executable path are right.
@pytest.mark.parametrize(
    "name", ["relu_fcn", "cnn_stride2", "transformer_block", "pytrees", "batch_coupled"]
)
def test_auto_against_reference(name):
    _check_float64("auto", name, (), ())


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "name", ["relu_fcn", "cnn_groups2", "transformer_block", "pytrees", "weight_sharing"]
)
@pytest.mark.parametrize("trace_axes,diagonal_axes", AXES[1:])
def test_trace_and_diagonal_against_reference(method, name, trace_axes, diagonal_axes):
    _check_float64(method, name, trace_axes, diagonal_axes)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", ["relu_fcn", "cnn_stride2", "transformer_block", "pytrees"])
def test_float32_against_reference(method, name):
    c = CASES32[name]
    got = ntk.ntk_fn(c.f, method=method)(c.x1, c.x2, c.params)
    for leaf in jax.tree.leaves(got):
        assert leaf.dtype == jnp.float32
    assert_close(got, zoo.case_reference(c), np.float32)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", ["relu_fcn", "cnn_dilation2", "weight_sharing", "batch_coupled"])
def test_x2_none_is_x1(method, name):
    c = CASES64[name]
    got = ntk.ntk_fn(c.f, method=method, vmap_axes=c.vmap_axes)(c.x1, None, c.params)
    assert_close(got, zoo.case_reference(c, itself=True), np.float64)
    k = np.asarray(ntk.as_matrix(got))
    np.testing.assert_allclose(k, k.T, rtol=1e-10, atol=1e-12)
    assert np.linalg.eigvalsh(k).min() > -1e-8 * np.abs(k).max()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "trace_axes,diagonal_axes",
    [((1,), ()), ((), (1,)), ((1, 2), ()), ((), (0,)), ((1,), (2,)), ((2,), (0, 1))],
)
def test_multi_axis_outputs(method, trace_axes, diagonal_axes):
    c = MULTI_AXIS
    same = 0 in diagonal_axes  # a diagonal batch axis needs N1 == N2
    kernel_fn = ntk.ntk_fn(c.f, method=method, trace_axes=trace_axes, diagonal_axes=diagonal_axes)
    got = kernel_fn(c.x1, c.x1 if same else c.x2, c.params)
    want = zoo.case_reference(c, trace_axes, diagonal_axes, itself=same)
    assert_close(got, want, np.float64)


def test_vmap_axes_none_matches_batched_for_independent_examples():
    c = CASES64["cnn_same"]
    a = ntk.ntk_fn(c.f, method="ntk_vector_products", vmap_axes=None)(c.x1, c.x2, c.params)
    b = ntk.ntk_fn(c.f, method="jacobian_contraction", vmap_axes=0)(c.x1, c.x2, c.params)
    assert_close(a, b, np.float64)


def test_batch_coupled_function_needs_vmap_axes_none():
    """With vmap_axes=0 a batch-statistics model gets a per-example (different) kernel."""
    c = CASES64["batch_coupled"]
    want = zoo.case_reference(c)
    wrong = ntk.ntk_fn(c.f, method="jacobian_contraction", vmap_axes=0)
    # On one example the batch statistics are degenerate, so per-example evaluation differs.
    assert rel_err(wrong(c.x1, c.x2, c.params), want) > 1e-3


def test_shapes_of_the_contract():
    c = CASES64["relu_fcn"]  # output (N, 4); N1=3, N2=2
    assert ntk.ntk_fn(c.f)(c.x1, c.x2, c.params).shape == (3, 2, 4, 4)
    assert ntk.ntk_fn(c.f, trace_axes=(-1,))(c.x1, c.x2, c.params).shape == (3, 2)
    assert ntk.ntk_fn(c.f, diagonal_axes=(-1,))(c.x1, c.x2, c.params).shape == (3, 2, 4)
    assert ntk.ntk_fn(c.f)(c.x1, None, c.params).shape == (3, 3, 4, 4)
