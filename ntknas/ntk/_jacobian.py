"""Jacobian contraction: Θ = Σ_l (∂f(x1)/∂θ_l)(∂f(x2)/∂θ_l)ᵀ (paper §3.3).

The reference method: instantiates both Jacobians, then contracts them parameter by parameter.
Cost N·O·[FP] + N1·N2·O²·P time, N·O·P memory.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from ._axes import OutputAxes
from ._batching import Batching
from ._blocks import Blocking


def jacobian(f: Callable, params, x, batching: Batching, ndim_out: int):
    """∂f(params, x)/∂params: a pytree like params, each leaf (*out_shape, *param_shape)."""
    out_size = math.prod(jax.eval_shape(f, params, x).shape)
    n_params = sum(math.prod(p.shape) for p in jax.tree.leaves(params))
    if batching.batched:
        n = batching.batch_size(x)
        out_size //= max(n, 1)
        g = batching.single(f, ndim_out)
        jac = jax.jacrev if out_size <= n_params else jax.jacfwd
        return jax.vmap(
            jac(g), in_axes=(None, batching.in_axes), out_axes=batching.out_axis_for(ndim_out)
        )(params, x)
    jac = jax.jacrev if out_size <= n_params else jax.jacfwd
    return jac(f)(params, x)


def contract(j1, j2, axes: OutputAxes):
    """Σ over parameter leaves of the einsum of two Jacobian pytrees."""
    lhs1, lhs2, out = axes.letters(reserved=10)
    terms = []
    for a, b in zip(jax.tree.leaves(j1), jax.tree.leaves(j2), strict=True):
        p = a.ndim - axes.ndim
        if p > 10:
            a = a.reshape(a.shape[: axes.ndim] + (-1,))
            b = b.reshape(b.shape[: axes.ndim] + (-1,))
            p = 1
        pl = "abcdefghij"[:p]
        terms.append(jnp.einsum(f"{lhs1}{pl},{lhs2}{pl}->{out}", a, b))
    return sum(terms[1:], terms[0])


def leaf_kernel(
    f: Callable, x1, x2, params, axes: OutputAxes, batching: Batching, blocking: Blocking
):
    del blocking  # the Jacobians are instantiated whole: this is the reference method
    j1 = jacobian(f, params, x1, batching, axes.ndim)
    j2 = j1 if x2 is None else jacobian(f, params, x2, batching, axes.ndim)
    return contract(j1, j2, axes)
