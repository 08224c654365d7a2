"""How the batch axis of inputs and outputs is described (``vmap_axes``) and used.

``vmap_axes=0`` (the default) says: axis 0 of every input leaf and of the output is the batch,
and output example ``n`` depends on input example ``n`` only. Methods then work one example at a
time (``jax.vmap``), which is much cheaper than differentiating the whole batch at once.
``vmap_axes=None`` makes no such assumption (needed e.g. for BatchNorm on batch statistics).
``vmap_axes=(in_axes, out_axis)`` names the batch axis of the inputs (an int or a pytree prefix of
``x``) and of the output separately.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp


@dataclass(frozen=True)
class Batching:
    in_axes: Any  # int, pytree prefix of x, or None
    out_axis: int | None

    @classmethod
    def make(cls, vmap_axes) -> Batching:
        if vmap_axes is None:
            return cls(None, None)
        if isinstance(vmap_axes, int):
            return cls(vmap_axes, vmap_axes)
        if isinstance(vmap_axes, tuple) and len(vmap_axes) == 2:
            in_axes, out_axis = vmap_axes
            if (in_axes is None) != (out_axis is None):
                raise ValueError("vmap_axes=(in_axes, out_axis) needs both set or both None")
            if out_axis is not None and not isinstance(out_axis, int):
                raise TypeError(f"vmap_axes out_axis must be an int, got {out_axis!r}")
            return cls(in_axes, out_axis)
        raise TypeError(f"vmap_axes must be an int, None or (in_axes, out_axis); got {vmap_axes!r}")

    @property
    def batched(self) -> bool:
        return self.out_axis is not None

    def out_axis_for(self, ndim: int) -> int:
        """The output batch axis as a non-negative int for an output of ``ndim`` axes."""
        assert self.out_axis is not None
        if not -ndim <= self.out_axis < ndim:
            raise ValueError(f"vmap_axes names output axis {self.out_axis}, output has {ndim} axes")
        return self.out_axis % ndim

    def batch_size(self, x) -> int:
        axes = _broadcast_prefix(self.in_axes, x)
        sizes = {
            leaf.shape[ax]
            for leaf, ax in zip(jax.tree.leaves(x), axes, strict=True)
            if ax is not None
        }
        if len(sizes) != 1:
            raise ValueError(f"inputs disagree on the batch size along vmap_axes: {sorted(sizes)}")
        return sizes.pop()

    def take(self, x, start: int, stop: int | None):
        """The examples ``start:stop`` of ``x`` (leaves without a batch axis are kept whole)."""
        axes = _broadcast_prefix(self.in_axes, x)
        leaves, tree = jax.tree.flatten(x)
        return jax.tree.unflatten(
            tree,
            [
                a if ax is None else jax.lax.slice_in_dim(a, start, stop, axis=ax)
                for a, ax in zip(leaves, axes, strict=True)
            ],
        )

    def single(self, f: Callable, ndim_out: int) -> Callable:
        """``f`` on one example: ``g(params, x_n)`` where ``x_n`` lacks the batch axis."""
        in_axes, out_axis = self.in_axes, self.out_axis_for(ndim_out)

        def g(params, xn):
            axes = _broadcast_prefix(in_axes, xn, expand=True)
            leaves, tree = jax.tree.flatten(xn)
            x = jax.tree.unflatten(
                tree,
                [
                    leaf if ax is None else jnp.expand_dims(leaf, ax)
                    for leaf, ax in zip(leaves, axes)
                ],
            )
            return jnp.squeeze(f(params, x), axis=out_axis)

        return g


def _broadcast_prefix(in_axes, x, expand: bool = False) -> list:
    """The batch axis of every leaf of ``x`` from a pytree prefix ``in_axes``."""
    if isinstance(in_axes, int) or in_axes is None:
        leaves = jax.tree.leaves(x)
        if in_axes is None:
            return [None] * len(leaves)
        out = []
        for leaf in leaves:
            nd = jnp.ndim(leaf) + (1 if expand else 0)
            out.append(in_axes % nd)
        return out
    axes = jax.tree.map(
        lambda ax, sub: [ax] * len(jax.tree.leaves(sub)), in_axes, x, is_leaf=lambda a: a is None
    )
    flat = [
        a for group in jax.tree.leaves(axes, is_leaf=lambda a: isinstance(a, list)) for a in group
    ]
    leaves = jax.tree.leaves(x)
    return [
        None if a is None else a % (jnp.ndim(leaf) + (1 if expand else 0))
        for a, leaf in zip(flat, leaves, strict=True)
    ]
