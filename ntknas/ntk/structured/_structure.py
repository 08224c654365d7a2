"""How one primitive's output depends on one parameter-valued operand: ``∂y/∂θ`` in factored form.

A :class:`Structure` says, with integer axis ids local to the structure,

    reshape(y, y_shape)[y_ids] = Σ  Π_f factor_f[f_ids]  ·  reshape(θ, t_shape)[t_ids]

summing over every id that is not in ``y_ids``. This covers the structures of appendix C:

- an id in ``y_ids`` and ``t_ids`` but in no factor: constant block-diagonal (dot_general's
  output axis, the channel axis of a bias broadcast);
- an id in ``y_ids``, ``t_ids`` and a factor: block-diagonal (``mul`` by a constant);
- an id in ``y_ids`` only: output block-tiled (``broadcast_in_dim``);
- an id in ``t_ids`` only: input block-tiled (``reduce_sum``);
- an id in factors and ``t_ids`` only: a genuine contraction (the ``x`` of ``y = x W``).

Only the factors are ever computed; the dense ``∂y/∂θ`` is never formed (except by
:func:`dense`, the fallback for primitives without a rule).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import opt_einsum

from .._blocks import UNBOUNDED, Blocking, basis_map
from . import _ir


@dataclass(frozen=True)
class Structure:
    """``∂y/∂θ`` of one primitive w.r.t. one operand, as factors with shared axis ids."""

    y_ids: tuple[int, ...]
    t_ids: tuple[int, ...]
    factors: tuple = ()  # tuple of (array, ids)
    y_shape: tuple[int, ...] | None = None  # y viewed in this shape (row-major reshape)
    t_shape: tuple[int, ...] | None = None  # θ viewed in this shape (row-major reshape)

    def __post_init__(self):
        if len(set(self.y_ids)) != len(self.y_ids) or len(set(self.t_ids)) != len(self.t_ids):
            raise ValueError(f"repeated ids in a structure: y {self.y_ids}, θ {self.t_ids}")
        for arr, ids in self.factors:
            if len(ids) != jnp.ndim(arr):
                raise ValueError(f"factor of shape {jnp.shape(arr)} given ids {ids}")

    def static(self) -> StaticStructure:
        return StaticStructure(
            self.y_ids,
            self.t_ids,
            tuple(ids for _, ids in self.factors),
            self.y_shape,
            self.t_shape,
        )

    def mismatch(self, y_shape, t_shape) -> str | None:
        """Why the ids do not fit these shapes (an id with two sizes), or None when they fit.

        ``jnp.einsum`` broadcasts a size-1 axis against any size, so a rule that gives a size-1
        θ axis the id of a size-N y axis (block-diagonal where it should be tiled) would not fail
        in the contraction: it would silently drop cross terms. The interpreter checks every
        rule's structure with this and falls back to the dense rule when it does not fit.
        """
        view_y = self.y_shape or tuple(y_shape)
        view_t = self.t_shape or tuple(t_shape)
        if len(view_y) != len(self.y_ids) or len(view_t) != len(self.t_ids):
            return f"ids {self.y_ids}, {self.t_ids} for shapes {view_y}, {view_t}"
        sizes: dict[int, int] = {}
        named = [(self.y_ids, view_y), (self.t_ids, view_t)]
        named += [(ids, jnp.shape(a)) for a, ids in self.factors]
        for ids, shape in named:
            for i, n in zip(ids, shape, strict=True):
                if sizes.setdefault(i, n) != n:
                    return f"id {i} has sizes {sizes[i]} and {n}"
        return None

    @property
    def arrays(self) -> list:
        return [jnp.asarray(a) for a, _ in self.factors]


@dataclass(frozen=True)
class StaticStructure:
    """The shape-only part of a :class:`Structure` (what the contraction needs at trace time)."""

    y_ids: tuple[int, ...]
    t_ids: tuple[int, ...]
    factor_ids: tuple[tuple[int, ...], ...]
    y_shape: tuple[int, ...] | None
    t_shape: tuple[int, ...] | None


def symbol(i: int) -> str:
    """Einsum symbol number ``i`` (beyond the 52 ASCII letters, opt_einsum's unicode symbols)."""
    return opt_einsum.get_symbol(i)


def apply(s: Structure, theta, y_shape: tuple[int, ...]):
    """``y = (∂y/∂θ) θ`` materialized from the structure (for tests and checks only)."""
    view_y = s.y_shape or y_shape
    theta = jnp.reshape(theta, s.t_shape or jnp.shape(theta))
    sizes = dict(zip(s.y_ids, view_y, strict=True))
    present = set(s.t_ids).union(*(ids for _, ids in s.factors))
    kept = [i for i in s.y_ids if i in present]
    spec = ",".join(
        "".join(symbol(i) for i in ids) for ids in [*(ids for _, ids in s.factors), s.t_ids]
    )
    spec += "->" + "".join(symbol(i) for i in kept)
    y = jnp.einsum(spec, *s.arrays, theta)
    y = jnp.expand_dims(y, tuple(k for k, i in enumerate(s.y_ids) if i not in present))
    y = jnp.broadcast_to(y, tuple(sizes[i] for i in s.y_ids))
    return jnp.reshape(y, y_shape)


def dense(
    eqn: _ir.Eqn, idx: int, out_idx: int, invals: list, blocking: Blocking = UNBOUNDED
) -> Structure:
    """The fallback rule: the full ``∂y/∂θ`` of the primitive (slow but right).

    The Jacobian of the primitive as a function of operand ``idx``, every other
    parameter-dependent operand set to zero (the primitive is linear in those jointly). Forward
    mode first; primitives with a transpose but no JVP rule (e.g. ``custom_lin``) are transposed
    against every basis vector of ``y`` instead.
    """
    t_var = eqn.invars[idx]
    y_var = eqn.outvars[out_idx]

    def y_of(theta):
        vals = []
        for k, (atom, v) in enumerate(zip(eqn.invars, invals, strict=True)):
            if k == idx:
                vals.append(theta)
            elif v is None:
                vals.append(jnp.zeros(atom.shape, atom.dtype))
            else:
                vals.append(v)
        return _ir.bind(eqn, vals)[out_idx]

    try:
        jac = jax.jacfwd(y_of)(jnp.zeros(t_var.shape, t_var.dtype))
    except Exception:  # no JVP rule (e.g. custom_lin): transpose against y's basis instead
        transpose = jax.linear_transpose(y_of, jax.ShapeDtypeStruct(t_var.shape, t_var.dtype))
        t_bytes = math.prod(t_var.shape) * jnp.dtype(t_var.dtype).itemsize
        block = blocking.block(math.prod(y_var.shape), 2 * t_bytes)
        rows = basis_map(lambda v: transpose(v)[0], y_var.shape, y_var.dtype, block)
        jac = rows.reshape(y_var.shape + t_var.shape)
    ny, nt = len(y_var.shape), len(t_var.shape)
    y_ids = tuple(range(ny))
    t_ids = tuple(range(ny, ny + nt))
    return Structure(y_ids, t_ids, ((jac, y_ids + t_ids),))
