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

Θ(x, x) with a batch axis is symmetric: example i's rows are computed against examples from i's
group on only, and the rest are transposes (:func:`_symmetric`), when the work saved outweighs
the extra compile time (:func:`group_count`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from ._axes import OutputAxes
from ._batching import Batching
from ._blocks import Blocking, basis_map, nbytes
from ._cost import xla_cost
from ._dtypes import PRECISIONS, matmul_precision, promote_half

# Memory one basis vector holds, in copies of (parameters + f's output on x2): its parameter
# cotangent, its row of the kernel, and the intermediates of the VJP and transposed VJP.
_COPIES_PER_VECTOR = 3

# Θ(x, x) is computed from its upper block triangle of example groups (:func:`_symmetric`), at
# most this many groups. Each group is traced on its own, so k groups cost about k times the
# compile time to save (k-1)/2k of the transposed VJPs (2·N²·O·[FP] FLOPs); compile plus one run
# is shortest near k = sqrt(N²·O·[FP] / (equations of f · _FLOPS_PER_COMPILED_EQN[backend])).
SYMMETRIC_GROUPS = 4
# FLOPs the backend runs in the time it takes to compile one more equation of f per group. CPU:
# vit-small's NTK-vector products (N=8, O=10, 1,172 equations) compiled in 18 s, 72 s with four
# groups, ~15 ms per equation and group, at this project's ~1e11 FLOP/s. Other backends: assumed
# 1000x the FLOP rate at the same compile time (not measured).
_FLOPS_PER_COMPILED_EQN = {"cpu": 1.5e9}
_OTHER_BACKENDS = 1.5e12
# Private switch (tests and benchmarks): "auto" (the rule above), "always" (SYMMETRIC_GROUPS
# whenever N allows) or "never" (all N² example pairs).
SYMMETRY = "auto"


def leaf_kernel(
    f: Callable, x1, x2, params, axes: OutputAxes, batching: Batching, blocking: Blocking
):
    same = x2 is None
    x2 = x1 if x2 is None else x2
    per_vector = _COPIES_PER_VECTOR * (nbytes(params) + nbytes(jax.eval_shape(f, params, x2)))

    def rows(f1, x1part, x2part, blocking1: Blocking):
        """Θ(x1part, x2part) as (s1..., s2...): row e is the transpose of v ↦ J1 J2ᵀ v at e."""
        out2, vjp2 = jax.vjp(lambda p: f(p, x2part), params)
        aval2 = jax.ShapeDtypeStruct(out2.shape, out2.dtype)
        out1, jvp1 = jax.linearize(lambda p: f1(p, x1part), params)
        row = jax.linear_transpose(lambda v: jvp1(vjp2(v)[0]), aval2)
        block = blocking1.block(out1.size, per_vector)
        got = basis_map(lambda e: row(e)[0], out1.shape, out1.dtype, block)
        return got.reshape(out1.shape + out2.shape)

    if not batching.batched:
        return axes.reduce_full(rows(f, x1, x2, blocking))
    d = axes.ndim
    b = batching.out_axis_for(d)
    g = batching.single(f, d)
    n = batching.batch_size(x1)

    # Every example of x1 may be in flight at once (vmap, and the groups of _symmetric).
    one = blocking.per_example(n)

    def row_block(x1part, x2part):
        """(examples of x1part, s1 without batch..., s2 of x2part...)."""
        return jax.vmap(lambda x1n: rows(g, x1n, x2part, one), in_axes=(batching.in_axes,))(x1part)

    groups = ()
    if same and b not in axes.trace + axes.diagonal and SYMMETRY != "never":
        groups = _groups(n, _group_count(g, params, x1, batching, n))
    if len(groups) > 1:
        full = _symmetric(row_block, batching, x1, groups, d, b)
    else:
        full = row_block(x1, x2)
    # (N1, s1 without batch..., s2...): x1's batch axis goes back to its place among s1.
    return axes.reduce_full(jnp.moveaxis(full, 0, b))


def _group_count(g, params, x, batching: Batching, n: int) -> int:
    """How many example groups Θ(x, x) is split into (1: none), by the rule at the top."""
    if n < 3:  # two groups of one example each: every pair is computed anyway
        return 1
    if SYMMETRY == "always":
        return SYMMETRIC_GROUPS
    one = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), (params, batching.take(x, 0, 1))
    )
    traced = jax.jit(lambda p, xs: jax.vmap(g, in_axes=(None, batching.in_axes))(p, xs)).trace(*one)
    cost = xla_cost(traced.lower())
    fp = cost[0] if cost else 0.0
    o = math.prod(traced.out_info.shape)
    return group_count(n, o, fp, len(traced.jaxpr.eqns), jax.default_backend())


def group_count(n: int, o: int, fp: float, eqns: int, backend: str) -> int:
    """The rule at the top: the group count that minimizes compile plus one run, modelled as
    (k-1)·eqns·rate (compile, in FLOP-equivalents) - (k-1)/2k·2·N²·O·[FP] (the saved VJPs)."""
    rate = _FLOPS_PER_COMPILED_EQN.get(backend, _OTHER_BACKENDS)
    k = round(math.sqrt(n * n * o * fp / (max(eqns, 1) * rate)))
    return max(1, min(n, SYMMETRIC_GROUPS, k))


def _groups(n: int, k: int) -> tuple[tuple[int, int], ...]:
    """``(start, stop)`` of ``k`` contiguous example groups of about equal size."""
    k = max(1, min(n, k))
    bounds = [round(i * n / k) for i in range(k + 1)]
    return tuple((bounds[i], bounds[i + 1]) for i in range(k))


def _symmetric(row_block, batching: Batching, x, groups, d: int, b: int):
    """Θ(x, x) as (N, s without batch..., s with batch at b...) from its upper block triangle.

    Group i's rows are computed against the examples from group i on; the blocks left of the
    diagonal are the transposes of earlier groups' blocks. For k groups the transposed VJPs over
    x2, most of NTK-vector products' work, shrink to (k+1)/2k of all pairs. Each group is traced
    on its own: its x2 is a static slice shared by all basis vectors, so the JVP's convolutions
    stay ungrouped (``lax.map`` over equal groups ran 2-2.5x, ``vmap`` 1.1x slower than all pairs
    on the benchmark CNNs, ad hoc), which multiplies the traced program, hence the compile time,
    by about k.
    """
    m = d  # canonical layout (N, s'..., N, s'...): x2's batch axis right after x1's axes
    blocks = []
    for start, stop in groups:
        block = row_block(batching.take(x, start, stop), batching.take(x, start, None))
        blocks.append(jnp.moveaxis(block, m + b, m))  # (n_i, s', N - start, s')
    swap = tuple(range(m, 2 * m)) + tuple(range(m))
    rows_out = []
    for i, (start, stop) in enumerate(groups):
        parts = []
        for j in range(i):  # columns of earlier groups: the transposes of their blocks
            s_j = groups[j][0]
            sub = jax.lax.slice_in_dim(blocks[j], start - s_j, stop - s_j, axis=m)
            parts.append(jnp.transpose(sub, swap))
        parts.append(blocks[i])
        rows_out.append(jnp.concatenate(parts, axis=m))
    full = jnp.concatenate(rows_out, axis=0)  # (N, s', N, s')
    return jnp.moveaxis(full, m, m + b)


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
