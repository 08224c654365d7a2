"""Structured derivatives (paper §3.4, §4-5, appendices C-D): linearize -> interpret -> contract.

``Θ = Σ_{l, k1, k2} (∂f̃1/∂y_k1)(∂y_k1/∂θ_l)(∂y_k2/∂θ_l)ᵀ(∂f̃2/∂y_k2)ᵀ`` (eq. 13), where y_k are
the outputs of the primitives that consume (a view of) a parameter in the linearized jaxpr of f.
The cotangents ∂f̃/∂y_k come from one backward pass that stops at the y_k; the structure of
∂y_k/∂θ_l comes from per-primitive rules (:mod:`.rules`), so only small factors (e.g. the layer
input x for ``y = x W``) are computed, and each pair is one cost-ordered einsum.

Cost for an L-layer width-W FCN: N·O·[backward pass] + N²·O²·L·W time, N·O·L·W memory (the Jacobian
contraction needs N²·O²·L·W² and N·O·L·W²).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from .._axes import OutputAxes
from .._batching import Batching
from .._blocks import Blocking
from . import _interpreter
from ._contract import contract


def leaf_kernel(
    f: Callable,
    x1,
    x2,
    params,
    axes: OutputAxes,
    batching: Batching,
    blocking: Blocking,
    groups: dict[str, list[int]] | None = None,
):
    """The NTK of one output leaf of ``f`` by structured derivatives.

    Args:
      f: ``f(params, x)`` returning ONE array of ``axes.ndim`` axes.
      x1, x2: input batches (pytrees); ``x2=None`` means x1 (its factors are reused).
      params: the parameter pytree.
      axes: which output axes are traced, diagonal or paired.
      batching: the batch axis of inputs and output (examples independent) or none.
      blocking: how many output basis vectors the backward pass runs at once.
      groups: None, or ``{block name: indices of its leaves in jax.tree.leaves(params)}``:
        the kernel of each block, ``J_b J_bᵀ``, from the same cotangents and factors (one
        backward pass for all blocks; the pairs of terms are summed per block).

    Returns:
      The kernel in the layout of :class:`OutputAxes`, in the output's dtype; with ``groups``,
      ``{block name: kernel}``.
    """
    d = axes.ndim
    lhs1, lhs2, out = axes.letters()
    out_dtype = jax.eval_shape(f, params, x1).dtype
    if batching.batched:
        b = batching.out_axis_for(d)
        g = batching.single(f, d)
        lead1 = lhs1[b] + lhs1[:b] + lhs1[b + 1 :]
        lead2 = lhs2[b] + lhs2[:b] + lhs2[b + 1 :]
        batch_letters = (lhs1[b], lhs2[b])
        side1 = _batched_side(g, params, x1, batching, blocking)
        side2 = side1 if x2 is None else _batched_side(g, params, x2, batching, blocking)
    else:
        lead1, lead2, batch_letters = lhs1, lhs2, ("", "")
        side1 = _plain_side(f, params, x1, blocking)
        side2 = side1 if x2 is None else _plain_side(f, params, x2, blocking)
    group_of = None
    if groups is not None:
        group_of = {leaf: name for name, leaves in groups.items() for leaf in leaves}
    kernel = contract(side1, side2, (lead1, lead2, out), batch_letters, group_of)

    def finish(k):
        if k is None:  # no parameter (of the block) reaches the output
            shape2 = jax.eval_shape(f, params, x1 if x2 is None else x2).shape
            shape1 = jax.eval_shape(f, params, x1).shape
            return jnp.zeros(axes.kernel_shape(shape1, shape2), out_dtype)
        return k.astype(out_dtype)

    if groups is None:
        return finish(kernel)
    return {name: finish(kernel[name]) for name in groups}


def _plain_side(f, params, x, blocking: Blocking):
    cts, factors, meta = _interpreter.side(f, params, x, blocking)
    return meta, cts, factors


def _batched_side(g, params, x, batching: Batching, blocking: Blocking):
    metas = []
    per_example = blocking.per_example(batching.batch_size(x))

    def one(xn):
        cts, factors, meta = _interpreter.side(g, params, xn, per_example)
        metas.append(meta)
        return cts, factors

    cts, factors = jax.vmap(one, in_axes=(batching.in_axes,))(x)
    return metas[0], cts, factors
