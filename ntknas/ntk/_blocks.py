"""Blocked evaluation over a basis: ``fn(e_i)`` for every basis vector, a block at a time.

Every method that instantiates a kernel from linear maps applies one to each basis vector of an
output space (NTK-vector products: Θ e_i; structured derivatives: the transpose of f̃ at e_i).
Doing all at once (``vmap`` over ``eye(size)``) holds ``size`` copies of every intermediate:
for ViT-S/16 at 224 with 1000 logits that is tens of GiB. :func:`basis_map` walks the basis in
blocks with ``lax.map`` (a scan over ``vmap``-ed blocks), so the peak holds one block; the
result is the same to float rounding for every block size.

The block size is normally fixed before tracing, from the compiled program's memory analysis
(:mod:`._compiled`); :class:`Blocking`'s estimate of bytes per vector serves where XLA gives
none, and where a fixed method is traced inside the caller's ``jit``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp


@dataclass(frozen=True)
class Blocking:
    """How many basis vectors are evaluated at once.

    Args:
      budget_bytes: memory the vectors of one block may hold together.
      block_size: a fixed block size (overrides the budget), or None.
    """

    budget_bytes: float = math.inf
    block_size: int | None = None

    def block(self, size: int, bytes_per_vector: float) -> int:
        """The block size for ``size`` vectors that each hold about ``bytes_per_vector``."""
        if self.block_size is not None:
            return max(1, min(size, self.block_size))
        if not math.isfinite(self.budget_bytes) or bytes_per_vector <= 0:
            return size
        return max(1, min(size, int(self.budget_bytes // bytes_per_vector)))

    def per_example(self, n: int) -> Blocking:
        """The blocking of one of ``n`` examples evaluated side by side (``vmap``)."""
        return Blocking(self.budget_bytes / max(n, 1), self.block_size)


UNBOUNDED = Blocking()  # every basis vector at once


def basis_map(fn: Callable, shape: tuple[int, ...], dtype, block: int):
    """``fn(e_i)`` stacked over the basis ``e_i`` of arrays of ``shape``: ``(size, *out)``.

    Args:
      fn: a function of one array of ``shape`` (pytree outputs are stacked leaf by leaf).
      shape, dtype: of the basis vectors.
      block: vectors evaluated at once (``vmap``); blocks run one after another (``lax.map``).
    """
    size = math.prod(shape)
    dtype = jnp.result_type(float) if dtype is None else dtype

    def one(i):
        return fn(jax.nn.one_hot(i, size, dtype=dtype).reshape(shape))

    index = jnp.arange(size)
    if block >= size:
        return jax.vmap(one)(index)
    return jax.lax.map(one, index, batch_size=block)


def nbytes(tree) -> int:
    """Bytes of every array (or shape-dtype struct) in ``tree``."""
    return sum(math.prod(jnp.shape(a)) * jnp.dtype(a.dtype).itemsize for a in jax.tree.leaves(tree))
