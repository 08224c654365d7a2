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


def leaf_kernel(f: Callable, x1, x2, params, axes: OutputAxes, batching: Batching):
    x2 = x1 if x2 is None else x2
    out1, jvp1 = jax.linearize(lambda p: f(p, x1), params)
    d = axes.ndim

    if not batching.batched:
        out2, vjp2 = jax.vjp(lambda p: f(p, x2), params)
        basis = jnp.eye(out2.size, dtype=out2.dtype).reshape((out2.size,) + out2.shape)
        rows = jax.vmap(lambda v: jvp1(vjp2(v)[0]))(basis)  # (size2, *out1.shape)
        full = rows.reshape(out2.shape + out1.shape)
        # (s2..., s1...) -> (s1..., s2...)
        full = jnp.transpose(full, tuple(range(d, 2 * d)) + tuple(range(d)))
        return axes.reduce_full(full)

    b = batching.out_axis_for(d)
    g = batching.single(f, d)

    def per_example(x2n):
        out2n, vjp2 = jax.vjp(lambda p: g(p, x2n), params)
        size = math.prod(out2n.shape)
        basis = jnp.eye(size, dtype=out2n.dtype).reshape((size,) + out2n.shape)
        rows = jax.vmap(lambda v: jvp1(vjp2(v)[0]))(basis)  # (size, *out1.shape)
        return rows.reshape(out2n.shape + out1.shape)

    # (N2, s2 without batch..., s1...) with the batch of x2 first.
    full = jax.vmap(per_example, in_axes=(batching.in_axes,))(x2)
    # Put x2's batch axis back at position b among x2's axes, then move x1's axes first.
    full = jnp.moveaxis(full, 0, b)
    full = jnp.transpose(full, tuple(range(d, 2 * d)) + tuple(range(d)))
    return axes.reduce_full(full)


def ntk_vp_fn(f: Callable, params, x1, x2=None) -> Callable:
    """The linear map v ↦ Θ(x1, x2) v without instantiating Θ.

    Args:
      f: ``f(params, x)``, any differentiable function; outputs may be pytrees.
      params: the parameters at which the NTK is taken.
      x1: first input batch; the result is shaped like ``f(params, x1)``.
      x2: second input batch (``None`` means ``x1``); ``v`` is shaped like ``f(params, x2)``.

    Returns:
      A jitted function ``v -> Θ v``, computed as one VJP on x2 followed by one JVP on x1.

    Example:
      >>> mvp = ntk_vp_fn(f, params, x)
      >>> u = mvp(jnp.ones_like(f(params, x)))
    """
    x2 = x1 if x2 is None else x2
    _, jvp1 = jax.linearize(lambda p: f(p, x1), params)
    out2, vjp2 = jax.vjp(lambda p: f(p, x2), params)
    expected = jax.tree.structure(out2)

    @jax.jit
    def mvp(v):
        if jax.tree.structure(v) != expected:
            raise ValueError(
                f"v must be shaped like f(params, x2): {expected}, got {jax.tree.structure(v)}"
            )
        for a, o in zip(jax.tree.leaves(v), jax.tree.leaves(out2)):
            if a.shape != o.shape:
                raise ValueError(f"v has a leaf of shape {a.shape}; f(params, x2) has {o.shape}")
        return jvp1(vjp2(v)[0])

    return mvp
