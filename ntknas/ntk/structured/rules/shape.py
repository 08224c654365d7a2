"""Rules for primitives that move, select, tile or sum entries of their operand.

Most are *separable*: along each axis the output is a small matrix ``M_a (|y_a|, |θ_a|)`` applied
to the operand (a slice, a pad, a placement, a window sum), and axes it leaves alone are constant
block-diagonal. Only those per-axis matrices are ever built.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from .._structure import Structure
from ._registry import register


def _separable(eqn, idx, mats: dict) -> Structure:
    """``y = (⊗_a M_a) θ``, with ``M_a`` given for the axes that change (others: identity)."""
    nd = len(eqn.outvars[0].shape)
    t_ids = tuple(range(nd))
    y_ids = tuple(nd + a if a in mats else a for a in range(nd))
    factors = tuple((m, (nd + a, a)) for a, m in sorted(mats.items()))
    return Structure(y_ids, t_ids, factors)


@register("broadcast_in_dim")
def broadcast_in_dim(eqn, idx, out_idx, invals):
    """Output block-tiled along the new (and size-1-expanded) axes."""
    if idx != 0:
        return None
    t_shape = eqn.invars[0].shape
    y_shape = eqn.outvars[0].shape
    bdims = eqn.params["broadcast_dimensions"]
    y_ids = list(range(len(y_shape)))
    t_ids = []
    for i, d in enumerate(bdims):
        t_ids.append(d if t_shape[i] == y_shape[d] else len(y_shape) + i)
    return Structure(tuple(y_ids), tuple(t_ids))


@register("reshape")
def reshape(eqn, idx, out_idx, invals):
    """A row-major reshape: θ is viewed in y's shape, then the identity."""
    if idx != 0 or eqn.params.get("dimensions") is not None:
        return None
    y_shape = eqn.outvars[0].shape
    ids = tuple(range(len(y_shape)))
    return Structure(ids, ids, t_shape=tuple(y_shape))


@register("transpose")
def transpose(eqn, idx, out_idx, invals):
    perm = eqn.params["permutation"]
    return Structure(tuple(perm), tuple(range(len(perm))))


@register("squeeze")
def squeeze(eqn, idx, out_idx, invals):
    dims = {d % len(eqn.invars[0].shape) for d in eqn.params["dimensions"]}
    nd = len(eqn.invars[0].shape)
    return Structure(tuple(a for a in range(nd) if a not in dims), tuple(range(nd)))


@register("reduce_sum")
def reduce_sum(eqn, idx, out_idx, invals):
    """Input block-tiled: y does not see the summed axes."""
    axes = set(eqn.params["axes"])
    nd = len(eqn.invars[0].shape)
    return Structure(tuple(a for a in range(nd) if a not in axes), tuple(range(nd)))


@register("rev")
def rev(eqn, idx, out_idx, invals):
    shape = eqn.invars[0].shape
    dt = eqn.outvars[0].dtype
    return _separable(
        eqn, idx, {a: jnp.eye(shape[a], dtype=dt)[::-1] for a in eqn.params["dimensions"]}
    )


@register("slice")
def slice_(eqn, idx, out_idx, invals):
    p = eqn.params
    shape = eqn.invars[0].shape
    dt = eqn.outvars[0].dtype
    strides = p["strides"] or (1,) * len(shape)
    mats = {}
    for a, (lo, hi, st) in enumerate(
        zip(p["start_indices"], p["limit_indices"], strides, strict=True)
    ):
        if (lo, hi, st) != (0, shape[a], 1):
            mats[a] = jnp.eye(shape[a], dtype=dt)[lo:hi:st]
    return _separable(eqn, idx, mats)


@register("dynamic_slice")
def dynamic_slice(eqn, idx, out_idx, invals):
    """A slice at traced offsets (the offsets are operands that do not depend on θ)."""
    if idx != 0 or any(v is None for v in invals[1:]):
        return None
    shape = eqn.invars[0].shape
    sizes = eqn.params["slice_sizes"]
    dt = eqn.outvars[0].dtype
    mats = {}
    for a, (start, size) in enumerate(zip(invals[1:], sizes, strict=True)):
        if size != shape[a]:
            eye = jnp.eye(shape[a], dtype=dt)
            start = jnp.asarray(start).astype(jnp.int32)
            mats[a] = lax.dynamic_slice(eye, (start, jnp.int32(0)), (size, shape[a]))
    return _separable(eqn, idx, mats)


@register("concatenate")
def concatenate(eqn, idx, out_idx, invals):
    """θ placed at its offset along the concatenation axis."""
    axis = eqn.params["dimension"]
    offset = sum(v.shape[axis] for v in eqn.invars[:idx])
    n_t, n_y = eqn.invars[idx].shape[axis], eqn.outvars[0].shape[axis]
    place = jnp.eye(n_y, n_t, -offset, dtype=eqn.outvars[0].dtype)
    return _separable(eqn, idx, {axis: place})


@register("pad")
def pad(eqn, idx, out_idx, invals):
    """θ placed (with interior padding or cropping) along each padded axis."""
    config = eqn.params["padding_config"]
    dt = eqn.outvars[0].dtype
    if idx == 1:  # the padding value itself: y = pv at the padded positions
        ones = jnp.ones(eqn.invars[0].shape, dt)
        mask = lax.pad(jnp.zeros_like(ones), jnp.ones((), dt), config)
        nd = mask.ndim
        return Structure(tuple(range(nd)), (), ((mask, tuple(range(nd))),))
    shape = eqn.invars[0].shape
    mats = {}
    for a, cfg in enumerate(config):
        if tuple(cfg) != (0, 0, 0):
            eye = jnp.eye(shape[a], dtype=dt)
            mats[a] = lax.pad(eye, jnp.zeros((), dt), (tuple(cfg), (0, 0, 0)))
    return _separable(eqn, idx, mats)


@register("reduce_window_sum")
def reduce_window_sum(eqn, idx, out_idx, invals):
    """Sum pooling, separable per axis: ``M_a`` is the window sum along axis ``a`` alone."""
    p = eqn.params
    shape = eqn.invars[0].shape
    dt = eqn.outvars[0].dtype
    base = p.get("base_dilation") or (1,) * len(shape)
    wdil = p.get("window_dilation") or (1,) * len(shape)
    mats = {}
    for a in range(len(shape)):
        args = (p["window_dimensions"][a], p["window_strides"][a], tuple(p["padding"][a]))
        if args != (1, 1, (0, 0)) or base[a] != 1 or wdil[a] != 1:
            eye = jnp.eye(shape[a], dtype=dt)
            mats[a] = lax.reduce_window(
                eye,
                jnp.zeros((), dt),
                lax.add,
                (args[0], 1),
                (args[1], 1),
                (args[2], (0, 0)),
                base_dilation=(base[a], 1),
                window_dilation=(wdil[a], 1),
            )
    return _separable(eqn, idx, mats)
