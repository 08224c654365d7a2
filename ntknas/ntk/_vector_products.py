"""NTK-vector products: Θ v = J(x1) [J(x2)ᵀ v], one VJP then one JVP (paper §3.5, app. I).

The kernel is instantiated by applying Θ to every basis vector of f's output on x2. With a batch
axis, a basis vector touches one example of x2 only, so the VJP runs on that example alone and the
JVP on the whole x1 batch: N1·N2·O·[FP] in all.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from ._axes import OutputAxes
from ._batching import Batching
from ._blocks import Blocking, basis_map, nbytes
from ._dtypes import PRECISIONS, matmul_precision, promote_half

# Memory one basis vector holds, in copies of (parameters + f's output on x1): its parameter
# cotangent, the JVP's output, and the intermediates of the VJP and JVP alongside them.
_COPIES_PER_VECTOR = 3


def leaf_kernel(
    f: Callable, x1, x2, params, axes: OutputAxes, batching: Batching, blocking: Blocking
):
    x2 = x1 if x2 is None else x2
    out1, jvp1 = jax.linearize(lambda p: f(p, x1), params)
    d = axes.ndim
    per_vector = _COPIES_PER_VECTOR * (nbytes(params) + nbytes(out1))

    if not batching.batched:
        out2, vjp2 = jax.vjp(lambda p: f(p, x2), params)
        block = blocking.block(out2.size, per_vector)
        rows = basis_map(lambda v: jvp1(vjp2(v)[0]), out2.shape, out2.dtype, block)
        full = rows.reshape(out2.shape + out1.shape)
        # (s2..., s1...) -> (s1..., s2...)
        full = jnp.transpose(full, tuple(range(d, 2 * d)) + tuple(range(d)))
        return axes.reduce_full(full)

    b = batching.out_axis_for(d)
    g = batching.single(f, d)
    one = blocking.per_example(batching.batch_size(x2))

    def per_example(x2n):
        out2n, vjp2 = jax.vjp(lambda p: g(p, x2n), params)
        block = one.block(math.prod(out2n.shape), per_vector)
        rows = basis_map(lambda v: jvp1(vjp2(v)[0]), out2n.shape, out2n.dtype, block)
        return rows.reshape(out2n.shape + out1.shape)

    # (N2, s2 without batch..., s1...) with the batch of x2 first.
    full = jax.vmap(per_example, in_axes=(batching.in_axes,))(x2)
    # Put x2's batch axis back at position b among x2's axes, then move x1's axes first.
    full = jnp.moveaxis(full, 0, b)
    full = jnp.transpose(full, tuple(range(d, 2 * d)) + tuple(range(d)))
    return axes.reduce_full(full)


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
