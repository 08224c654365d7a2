"""NTK-vector products: Θ v = J(x1) [J(x2)ᵀ v], one VJP then one JVP (paper §3.5, app. I).

The kernel is instantiated a row at a time: row e of Θ(x1, x2) is J2 J1ᵀ e, the transpose of
v ↦ J1 J2ᵀ v (``jax.linear_transpose``) applied to a basis vector e of f's output on x1. With a
batch axis, e touches one example of x1 only, so the VJP runs on that example alone and the
transposed VJP of x2 on the whole x2 batch: N1·N2·O·[FP] in all.

Transposing, rather than applying J1 (J2ᵀ e) to a basis of x2's output, computes the same values
with the same FLOPs, but XLA then contracts each basis vector's parameter cotangent with x2's
layer inputs in the layout it was made in, where the JVP first transposes every such cotangent
in memory: faster on dense layers, at the same or a lower compiled peak (README, "Against the
reference implementation").
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from ._axes import OutputAxes
from ._batching import Batching
from ._blocks import Blocking, basis_map, nbytes
from ._dtypes import PRECISIONS, matmul_precision, promote_half

# Memory one basis vector holds, in copies of (parameters + f's output on x2): its parameter
# cotangent, its row of the kernel, and the intermediates of the VJP and transposed VJP.
_COPIES_PER_VECTOR = 3


def leaf_kernel(
    f: Callable, x1, x2, params, axes: OutputAxes, batching: Batching, blocking: Blocking
):
    x2 = x1 if x2 is None else x2
    out2, vjp2 = jax.vjp(lambda p: f(p, x2), params)
    aval2 = jax.ShapeDtypeStruct(out2.shape, out2.dtype)
    per_vector = _COPIES_PER_VECTOR * (nbytes(params) + nbytes(out2))

    def rows(f1, x1part, blocking1: Blocking):
        """Θ(x1part, x2) as (s1..., s2...): row e is the transpose of v ↦ J1 J2ᵀ v at e."""
        out1, jvp1 = jax.linearize(lambda p: f1(p, x1part), params)
        row = jax.linear_transpose(lambda v: jvp1(vjp2(v)[0]), aval2)
        block = blocking1.block(out1.size, per_vector)
        got = basis_map(lambda e: row(e)[0], out1.shape, out1.dtype, block)
        return got.reshape(out1.shape + out2.shape)

    if not batching.batched:
        return axes.reduce_full(rows(f, x1, blocking))
    g = batching.single(f, axes.ndim)
    one = blocking.per_example(batching.batch_size(x1))
    # (N1, s1 without batch..., s2...): x1's batch axis goes back to its place among s1.
    full = jax.vmap(lambda x1n: rows(g, x1n, one), in_axes=(batching.in_axes,))(x1)
    return axes.reduce_full(jnp.moveaxis(full, 0, batching.out_axis_for(axes.ndim)))


def ntk_vp_fn(f: Callable, precision: str = "highest") -> Callable:
    """The linear map v ↦ Θ(x1, x2) v without instantiating Θ, compiled once for all arguments.

    Parameters and inputs are arguments of the compiled function (nothing is baked into it as
    a constant), so one compilation serves every parameter value and input batch of the same
    shapes: an iterative solver (Lanczos, Hutchinson) calls it many times at the cost of one
    forward pass, one VJP and one JVP per call.

    Args:
      f: ``f(params, x)``, any differentiable function; outputs may be pytrees.
      precision: matmul precision, as for :func:`ntknas.ntk.ntk_fn` (full float32 by default).

    Returns:
      A jitted ``mvp(v, x1, x2, params)``: ``v`` shaped like ``f(params, x2)`` (``x2=None``
      means x1), the result shaped like ``f(params, x1)``. Raises ValueError when ``v`` does
      not match ``f(params, x2)``.

    Example:
      >>> mvp = ntk_vp_fn(f)
      >>> u = mvp(jnp.ones_like(f(params, x)), x, None, params)
    """
    if precision not in PRECISIONS:
        allowed = ", ".join(repr(p) for p in PRECISIONS)
        raise ValueError(f"unknown precision {precision!r}; choose one of {allowed}")

    @jax.jit
    def mvp(v, x1, x2, params):
        v, x1, x2, params = promote_half((v, x1, x2, params))
        x2 = x1 if x2 is None else x2
        with matmul_precision(precision):
            out2, vjp2 = jax.vjp(lambda p: f(p, x2), params)
            expected = jax.tree.structure(out2)
            if jax.tree.structure(v) != expected:
                raise ValueError(
                    f"v must be shaped like f(params, x2): {expected}, got {jax.tree.structure(v)}"
                )
            for a, o in zip(jax.tree.leaves(v), jax.tree.leaves(out2), strict=True):
                if a.shape != o.shape:
                    raise ValueError(
                        f"v has a leaf of shape {a.shape}; f(params, x2) has {o.shape}"
                    )
            v = jax.tree.map(lambda a, o: a.astype(o.dtype), v, out2)
            return jax.jvp(lambda p: f(p, x1), (params,), vjp2(v))[1]

    return mvp
