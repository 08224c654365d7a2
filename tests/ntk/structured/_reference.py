"""Float64 reference NTK from explicit Jacobians of the whole batch, and a comparison helper."""

import contextlib
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ntknas import ntk
from ntknas.ntk._axes import OutputAxes
from ntknas.ntk._switches import switched

RTOL = {jnp.dtype(jnp.float64): 1e-6, jnp.dtype(jnp.float32): 1e-3}


def reference_ntk(f, x1, x2, params, trace_axes=(), diagonal_axes=()):
    """``J1 J2ᵀ`` per output leaf (jacrev of the whole batch, flattened), in the kernel layout."""
    x2 = x1 if x2 is None else x2
    return _reference(f, tuple(np.atleast_1d(trace_axes)), tuple(np.atleast_1d(diagonal_axes)))(
        x1, x2, params
    )


@functools.lru_cache(maxsize=64)
def _reference(f, trace_axes, diagonal_axes):
    return jax.jit(functools.partial(_reference_impl, f, trace_axes, diagonal_axes))


def _reference_impl(f, trace_axes, diagonal_axes, x1, x2, params):
    theta, unravel = ravel_pytree(params)

    def jac(x):
        return jax.jacrev(lambda t: f(unravel(t), x))(theta)

    out1, out2 = jac(x1), jac(x2)
    leaves1, tree = jax.tree.flatten(out1)
    kernels = []
    for j1, j2 in zip(leaves1, jax.tree.leaves(out2), strict=True):
        s1, s2 = j1.shape[:-1], j2.shape[:-1]
        full = (j1.reshape(-1, theta.size) @ j2.reshape(-1, theta.size).T).reshape(s1 + s2)
        kernels.append(
            OutputAxes.make(
                len(s1), [int(a) for a in trace_axes], [int(a) for a in diagonal_axes]
            ).reduce_full(full)
        )
    return jax.tree.unflatten(tree, kernels)


def assert_close(got, want, dtype):
    rtol = RTOL[jnp.dtype(dtype)]
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert g.shape == w.shape, (g.shape, w.shape)
        assert g.dtype == jnp.dtype(dtype), g.dtype
        g, w = np.asarray(g, np.float64), np.asarray(w, np.float64)
        scale = np.max(np.abs(w))
        assert scale > 0, "reference kernel is zero: the test cannot fail"
        err = np.max(np.abs(g - w)) / scale
        assert err < rtol, f"relative error {err:.3g} >= {rtol}"


def check_all(f, x1, x2, params, dtype=jnp.float64, rules_off=False, against_jc=True, **kw):
    """Structured == float64 reference == Jacobian contraction (and == rules off if asked)."""
    cast = lambda t: jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), t)  # noqa: E731
    want = reference_ntk(
        f,
        cast(x1),
        None if x2 is None else cast(x2),
        cast(params),
        **{k: v for k, v in kw.items() if k in ("trace_axes", "diagonal_axes")},
    )
    if "vmap_axes" not in kw:
        kw["vmap_axes"] = 0
    got = ntk.ntk_fn(f, "structured_derivatives", **kw)(x1, x2, params)
    assert_close(got, jax.tree.map(lambda a: a.astype(dtype), want), dtype)
    if against_jc:
        jc = ntk.ntk_fn(f, "jacobian_contraction", **kw)(x1, x2, params)
        assert_close(got, jc, dtype)
    if rules_off:
        with switched(rules=False):
            off = ntk.ntk_fn(f, "structured_derivatives", **kw)(x1, x2, params)
        assert_close(off, got, dtype)
    return got


@contextlib.contextmanager
def dense_fallbacks():
    """Records the primitives that fell back to the dense rule in the block (a list of names)."""
    from ntknas.ntk.structured import _structure

    seen: list[str] = []
    real = _structure.dense

    def spy(eqn, *args):
        seen.append(eqn.name)
        return real(eqn, *args)

    _structure.dense = spy
    try:
        yield seen
    finally:
        _structure.dense = real
