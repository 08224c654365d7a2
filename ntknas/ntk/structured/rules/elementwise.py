"""Rules for elementwise linear primitives: identity, sign, scaling, masking (block-diagonal)."""

from __future__ import annotations

import jax.numpy as jnp

from .._structure import Structure
from ._registry import register


def _identity(eqn, idx, factors=()):
    """``y = c ⊙ θ`` (c from ``factors``; none means 1), with a scalar θ broadcast to y."""
    t_nd = len(eqn.invars[idx].shape)
    y_nd = len(eqn.outvars[0].shape)
    if t_nd == y_nd:
        ids = tuple(range(y_nd))
        return Structure(ids, ids, factors)
    if t_nd == 0:  # a scalar operand broadcast by the primitive: output block-tiled
        return Structure(tuple(range(y_nd)), (), factors)
    return None


def _scale(eqn, idx, c):
    """``y = c ⊙ θ`` for a constant ``c`` of y's shape or a scalar."""
    c = jnp.asarray(c)
    y_nd = len(eqn.outvars[0].shape)
    if c.ndim == 0:
        return _identity(eqn, idx, ((c, ()),))
    if c.ndim != y_nd or len(eqn.invars[idx].shape) != y_nd:
        return None
    ids = tuple(range(y_nd))
    return Structure(ids, ids, ((c, ids),))


@register("add", "add_any", "convert_element_type", "copy", "copy_p", "reduce_precision")
def identity(eqn, idx, out_idx, invals):
    """``y = θ + (other)``: the identity on θ (constant block-diagonal everywhere)."""
    return _identity(eqn, idx)


@register("sub")
def sub(eqn, idx, out_idx, invals):
    if idx == 0:
        return _identity(eqn, idx)
    return _identity(eqn, idx, ((jnp.asarray(-1, eqn.outvars[0].dtype), ()),))


@register("neg")
def neg(eqn, idx, out_idx, invals):
    return _identity(eqn, idx, ((jnp.asarray(-1, eqn.outvars[0].dtype), ()),))


@register("mul")
def mul(eqn, idx, out_idx, invals):
    """``y = c ⊙ θ``: block-diagonal with the constant operand as the factor."""
    c = invals[1 - idx]
    return None if c is None else _scale(eqn, idx, c)


@register("div")
def div(eqn, idx, out_idx, invals):
    """``y = θ / c`` (a linear primitive only in its numerator)."""
    if idx != 0 or invals[1] is None:
        return None
    return _scale(eqn, idx, 1 / jnp.asarray(invals[1]))


@register("select_n")
def select_n(eqn, idx, out_idx, invals):
    """``y = where(pred == idx - 1, θ, ...)``: block-diagonal with a 0/1 mask."""
    pred = invals[0]
    if idx == 0 or pred is None:
        return None
    mask = (jnp.asarray(pred) == idx - 1).astype(eqn.outvars[0].dtype)
    return _scale(eqn, idx, mask)
