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
    """Σ over parameter leaves of <J1, J2>.

    A leaf with two parameter axes (a dense kernel) is laid out as (diagonal axes, paired axes,
    traced axes + parameter axes), reshaped to at most three dimensions and contracted by one
    (batched) GEMM over the contiguous trailing axis; with neither traced nor diagonal axes that
    layout is the Jacobian's own and the reshape is free. Through an einsum over the unflattened
    axes, XLA's CPU backend copied each such leaf into a parameter-major layout first. Other
    leaves (biases, scales, attention's three-axis kernels, convolutions) keep the einsum: there
    the reshape is the one that copies, and XLA's compiled peak rose instead (README.md, "Against
    the reference implementation").
    """
    d = axes.ndim
    lhs1, lhs2, out = axes.letters(reserved=10)
    diag = list(axes.diagonal)
    paired = [i for i in range(d) if i not in axes.trace and i not in axes.diagonal]
    order = diag + paired + list(axes.trace)
    s1, s2 = jax.tree.leaves(j1)[0].shape[:d], jax.tree.leaves(j2)[0].shape[:d]  # every leaf's
    n_diag = math.prod(s1[i] for i in diag)
    r1, r2 = math.prod(s1[i] for i in paired), math.prod(s2[i] for i in paired)
    gemm, summed = None, None
    for a, b in zip(jax.tree.leaves(j1), jax.tree.leaves(j2), strict=True):
        if a.ndim - d == 2:
            c = math.prod(s1[i] for i in axes.trace) * math.prod(a.shape[d:])
            perm = order + list(range(d, a.ndim))
            a = jnp.transpose(a, perm).reshape(n_diag, r1, c)
            b = jnp.transpose(b, perm).reshape(n_diag, r2, c)
            if diag:
                term = jax.lax.dot_general(a, b, (((2,), (2,)), ((0,), (0,))))
            else:
                term = jnp.matmul(a[0], b[0].T)[None]
            gemm = term if gemm is None else gemm + term
            continue
        p = a.ndim - d
        if p > 10:
            a = a.reshape(s1 + (-1,))
            b = b.reshape(s2 + (-1,))
            p = 1
        pl = "abcdefghij"[:p]
        term = jnp.einsum(f"{lhs1}{pl},{lhs2}{pl}->{out}", a, b)
        summed = term if summed is None else summed + term
    if gemm is None:
        return summed
    k = gemm.reshape(
        tuple(s1[i] for i in diag) + tuple(s1[i] for i in paired) + tuple(s2[i] for i in paired)
    )
    # (diagonal, paired of x1, paired of x2) -> the einsum terms' layout, by the same letters
    gemm_letters = "".join(lhs1[i] for i in diag + paired) + "".join(lhs2[i] for i in paired)
    k = jnp.einsum(f"{gemm_letters}->{out}", k)
    return k if summed is None else summed + k


def leaf_kernel(
    f: Callable, x1, x2, params, axes: OutputAxes, batching: Batching, blocking: Blocking
):
    del blocking  # the Jacobians are instantiated whole: this is the reference method
    j1 = jacobian(f, params, x1, batching, axes.ndim)
    j2 = j1 if x2 is None else jacobian(f, params, x2, batching, axes.ndim)
    return contract(j1, j2, axes)
