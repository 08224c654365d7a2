"""Rules for elementwise linear primitives: identity, sign, scaling, masking (block-diagonal)."""

from __future__ import annotations

import jax.numpy as jnp

from .._structure import Structure
from ._registry import register


def _ids(shape, y_shape, fresh: int) -> tuple[int, ...]:
    """Axis ids of an operand of an elementwise primitive: y's id where the sizes agree, a fresh
    id for a size-1 axis broadcast by the primitive (jax >= 0.10 lets binary ops broadcast those);
    a rank-0 operand has no ids."""
    if len(shape) == 0:
        return ()
    if len(shape) != len(y_shape):
        raise ValueError(f"operand of shape {shape} for an output of shape {y_shape}")
    return tuple(
        a if n == m else fresh + a for a, (n, m) in enumerate(zip(shape, y_shape, strict=True))
    )


def _scaled(eqn, idx, c=None) -> Structure:
    """``y = c ⊙ θ`` with numpy-style broadcasting of size-1 axes (``c=None`` means 1)."""
    y_shape = eqn.outvars[0].shape
    nd = len(y_shape)
    y_ids = tuple(range(nd))
    t_ids = _ids(eqn.invars[idx].shape, y_shape, nd)
    if c is None:
        return Structure(y_ids, t_ids)
    c = jnp.asarray(c)
    return Structure(y_ids, t_ids, ((c, _ids(c.shape, y_shape, 2 * nd)),))


def _minus_one(eqn):
    return jnp.asarray(-1, eqn.outvars[0].dtype)


@register("add", "add_any", "convert_element_type", "copy")
def identity(eqn, idx, out_idx, invals):
    """``y = θ + (other)``: the identity on θ (constant block-diagonal everywhere)."""
    return _scaled(eqn, idx)


@register("sub")
def sub(eqn, idx, out_idx, invals):
    return _scaled(eqn, idx, None if idx == 0 else _minus_one(eqn))


@register("neg")
def neg(eqn, idx, out_idx, invals):
    return _scaled(eqn, idx, _minus_one(eqn))


@register("mul")
def mul(eqn, idx, out_idx, invals):
    """``y = c ⊙ θ``: block-diagonal with the constant operand as the factor."""
    c = invals[1 - idx]
    return None if c is None else _scaled(eqn, idx, c)


@register("div")
def div(eqn, idx, out_idx, invals):
    """``y = θ / c`` (a linear primitive only in its numerator)."""
    if idx != 0 or invals[1] is None:
        return None
    return _scaled(eqn, idx, 1 / jnp.asarray(invals[1]))


@register("select_n")
def select_n(eqn, idx, out_idx, invals):
    """``y = where(pred == idx - 1, θ, ...)``: block-diagonal with a 0/1 mask."""
    pred = invals[0]
    if idx == 0 or pred is None:
        return None
    mask = (jnp.asarray(pred) == idx - 1).astype(eqn.outvars[0].dtype)
    return _scaled(eqn, idx, mask)
