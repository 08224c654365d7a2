"""NtkMethod and what every method shares: input checks, output shapes, the per-leaf dispatch.

Both the public surface (:mod:`._api`) and the automatic choice (:mod:`._auto`) build on these.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from . import _jacobian, _vector_products, structured
from ._axes import OutputAxes
from ._batching import Batching


class NtkMethod(str, enum.Enum):
    """How the NTK is computed (paper §3).

    - ``JACOBIAN_CONTRACTION``: instantiate both Jacobians and contract them (the reference).
    - ``NTK_VECTOR_PRODUCTS``: apply v ↦ J1 J2ᵀ v (one VJP + one JVP) to every basis vector.
    - ``STRUCTURED_DERIVATIVES``: contract ∂f/∂y with structured ∂y/∂θ per primitive.
    - ``AUTO``: estimate each method's cost for the given shapes and run the cheapest.
    """

    JACOBIAN_CONTRACTION = "jacobian_contraction"
    NTK_VECTOR_PRODUCTS = "ntk_vector_products"
    STRUCTURED_DERIVATIVES = "structured_derivatives"
    AUTO = "auto"


_IMPLS: dict[NtkMethod, Callable] = {
    NtkMethod.JACOBIAN_CONTRACTION: _jacobian.leaf_kernel,
    NtkMethod.NTK_VECTOR_PRODUCTS: _vector_products.leaf_kernel,
    NtkMethod.STRUCTURED_DERIVATIVES: structured.leaf_kernel,
}


def parse_method(method) -> NtkMethod:
    try:
        return NtkMethod(method)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in NtkMethod)
        raise ValueError(f"unknown NTK method {method!r}; choose one of {allowed}") from None


def check_arrays(tree, name: str) -> None:
    """Raises TypeError naming the first leaf of ``tree`` that is not an array (or not float)."""
    if tree is None:
        raise TypeError(f"{name} is required")
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if not (hasattr(leaf, "shape") and hasattr(leaf, "dtype")):
            where = jax.tree_util.keystr(path) or "(root)"
            raise TypeError(f"{name}{where} is a {type(leaf).__name__}, not an array")
        if not np.issubdtype(np.dtype(leaf.dtype), np.inexact) and name == "params":
            where = jax.tree_util.keystr(path) or "(root)"
            raise TypeError(f"params{where} has dtype {leaf.dtype}; parameters must be floating")


def output_shapes(f, x1, x2, params):
    try:
        out1 = jax.eval_shape(f, params, x1)
        out2 = out1 if x2 is None else jax.eval_shape(f, params, x2)
    except Exception as e:  # the user's function failed on these shapes: say so plainly
        raise ValueError(f"f(params, x) failed on the given shapes: {type(e).__name__}: {e}") from e
    if jax.tree.structure(out1) != jax.tree.structure(out2):
        raise ValueError("f returns differently structured outputs on x1 and x2")
    return out1, out2


def compute(f, method: NtkMethod, trace_axes, diagonal_axes, batching: Batching, x1, x2, params):
    """The kernel of every output leaf of ``f`` by one (concrete, not auto) method."""
    out1, out2 = output_shapes(f, x1, x2, params)
    leaves1, tree = jax.tree.flatten(out1)
    leaves2 = jax.tree.leaves(out2)
    impl = _IMPLS[method]
    kernels = []
    for i, (o1, o2) in enumerate(zip(leaves1, leaves2, strict=True)):
        axes = OutputAxes.make(o1.ndim, trace_axes, diagonal_axes)
        axes.check_shapes(o1.shape, o2.shape)
        if batching.batched:
            batching.out_axis_for(o1.ndim)
        f_i = f if tree.num_leaves == 1 and tree == jax.tree.structure(0) else _leaf_fn(f, i)
        kernels.append(impl(f_i, x1, x2, params, axes, batching))
    return jax.tree.unflatten(tree, kernels)


def _leaf_fn(f, i):
    def f_i(params, x):
        return jax.tree.leaves(f(params, x))[i]

    return f_i


def _avals(t):
    if t is None:
        return None
    leaves, tree = jax.tree.flatten(t)
    return tree, tuple(
        (tuple(a.shape), str(a.dtype), bool(getattr(a, "weak_type", False))) for a in leaves
    )


def cache_key(f, trace_axes, diagonal_axes, vmap_axes, x1, x2, params) -> Any:
    """A hashable key of (f, axes, shapes, dtypes, backend), or None if ``f`` is not hashable."""
    key = (
        f,
        tuple(np.atleast_1d(trace_axes).tolist()),
        tuple(np.atleast_1d(diagonal_axes).tolist()),
        repr(vmap_axes),
        _avals(x1),
        _avals(x2),
        _avals(params),
        jax.default_backend(),
    )
    try:
        hash(key)
    except TypeError:
        return None
    return key
