"""Compiled kernels within a memory budget: block sizes from XLA's ``memory_analysis()``.

NTK-vector products and structured derivatives walk the output basis in blocks
(:func:`._blocks.basis_map`); the block size trades memory for speed (fewer, larger matmuls). An
estimate of a block's memory from array sizes misses what XLA really keeps alive (fusions, the
backward pass's temporaries, buffers reused), so the default block size is read off compiled
programs, whose peak (arguments + outputs + temporaries) is what must fit the budget:

1. compile with every basis vector at once; if its peak fits, that is the program;
2. compile with blocks of one vector; if even that exceeds the budget, it is the best there is;
3. otherwise the peak grows about linearly with the block size: interpolate between the largest
   block known to fit and the smallest known not to (regula falsi; halving where the two peaks
   give no slope; at least doubling while the blocks that fit hold under half the room), compile
   that block to verify, and repeat a few times while the next block would be much larger than
   the best that fits.

Where XLA gives no memory analysis (some backends), the block size comes from the estimate of
bytes per basis vector in :class:`._blocks.Blocking`. A method that walks no basis (Jacobian
contraction) is compiled once.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax

from ._kernel import NtkMethod, Options, compute, memory_budget, output_shapes

UNBLOCKED = sys.maxsize  # a block size no basis reaches: every basis vector at once
_MAX_PROBES = 4  # compiles after the first two (no blocks, blocks of one)
_CLOSE_ENOUGH = 1.25  # stop once the next block would be less than this much larger
_BLOCKED_METHODS = (NtkMethod.NTK_VECTOR_PRODUCTS, NtkMethod.STRUCTURED_DERIVATIVES)


def lower(fn: Callable, *args):
    """``jax.jit(fn)`` lowered on the abstract values of ``args`` (nothing is compiled or run)."""
    abstract = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, weak_type=getattr(a, "weak_type", False)),
        args,
    )
    return jax.jit(fn).lower(*abstract)


def peak_bytes(compiled) -> float | None:
    """Arguments + outputs + temporaries of a compiled executable (None if XLA does not say)."""
    try:
        m = compiled.memory_analysis()
    except Exception:  # some backends do not implement it
        return None
    if m is None:
        return None
    return float(
        m.argument_size_in_bytes
        + m.output_size_in_bytes
        + m.temp_size_in_bytes
        - m.alias_size_in_bytes
    )


@dataclass(frozen=True)
class Fitted:
    """A compiled kernel and how its block size was chosen.

    ``block_size`` is what ``Options.block_size`` was set to: :data:`UNBLOCKED`, a number of
    basis vectors, or None where it came from the estimate (no memory analysis).
    """

    compiled: Any
    block_size: int | None
    peak_bytes: float | None
    compiles: int = 1  # programs compiled to choose it


def fit_blocks(compile_at: Callable[[int | None], Any], budget: float, basis: int) -> Fitted:
    """The largest block size whose compiled peak fits ``budget`` (see the module docstring).

    Args:
      compile_at: the compiled program at a block size (:data:`UNBLOCKED`, an int, or None for
        the estimate-based blocks); it may raise (e.g. out of memory while compiling), which
        counts as not fitting, except at one vector per block, where it propagates.
      budget: bytes the compiled peak may take.
      basis: the largest basis walked (1: no basis, block sizes do not matter).

    Returns:
      A :class:`Fitted`; over the budget only where blocks of one vector are (then whichever
      of the two first programs peaks lower).
    """
    compiles = 1
    if basis <= 1:
        full = compile_at(UNBLOCKED)
        return Fitted(full, UNBLOCKED, peak_bytes(full))
    try:
        full = compile_at(UNBLOCKED)
        p_full = peak_bytes(full)
        if p_full is None:  # no memory analysis: blocks from the estimate
            return Fitted(compile_at(None), None, None, 2)
    except Exception:  # compiling every vector at once failed: blocks may still compile
        full, p_full = None, math.inf
    if p_full <= budget:
        return Fitted(full, UNBLOCKED, p_full, compiles)
    one = compile_at(1)
    p_one = peak_bytes(one)
    compiles += 1
    if p_one is None:
        return Fitted(one, 1, None, compiles)
    if p_one > budget:
        if p_one < p_full:
            return Fitted(one, 1, p_one, compiles)
        return Fitted(full, UNBLOCKED, p_full, compiles)
    best = Fitted(one, 1, p_one, compiles)
    lo, hi = (1, p_one), (basis, p_full)  # lo fits, hi does not
    for _ in range(_MAX_PROBES):
        b = _next_block(lo, hi, budget)
        if b is not None and lo[1] - p_one < (budget - p_one) / 2:
            # The blocks hold under half the room they may take: at least double (peaks that grow
            # faster than linearly make the interpolation timid).
            b = max(b, min(2 * lo[0], (lo[0] + hi[0]) // 2))
        if b is None or (lo[0] > 1 and b < _CLOSE_ENOUGH * lo[0]):
            break
        compiles += 1
        try:
            c = compile_at(b)
            p = peak_bytes(c)
        except Exception:  # counts as over the budget
            c, p = None, math.inf
        if p is not None and p <= budget:
            lo, best = (b, p), Fitted(c, b, p, compiles)
        else:
            hi = (b, math.inf if p is None else p)
    return dataclasses.replace(best, compiles=compiles)


def _next_block(lo: tuple[int, float], hi: tuple[int, float], budget: float) -> int | None:
    """The block size between ``lo`` (fits) and ``hi`` (does not) where the budget is reached,
    by linear interpolation of their peaks; None when no size lies strictly between them."""
    (b_lo, p_lo), (b_hi, p_hi) = lo, hi
    if b_hi - b_lo <= 1:
        return None
    if math.isfinite(p_hi) and p_hi > p_lo:
        b = b_lo + int((budget - p_lo) * (b_hi - b_lo) / (p_hi - p_lo))
    else:
        b = (b_lo + b_hi) // 2
    return min(max(b, b_lo + 1), b_hi - 1)


def basis_size(f, method: NtkMethod, options: Options, x1, x2, params) -> int:
    """The largest output basis the method walks: the output of one example (all of it without a
    batch axis); 1 for a method that walks none."""
    if method not in _BLOCKED_METHODS:
        return 1
    batching = options.batching
    sizes = [1]
    for out in jax.tree.leaves(output_shapes(f, x1, x2, params)):
        n = math.prod(out.shape)
        if batching.batched and out.ndim:
            n //= max(out.shape[batching.out_axis_for(out.ndim)], 1)
        sizes.append(n)
    return max(sizes)


def fit_kernel(f, method: NtkMethod, options: Options, args: tuple, lowered=None) -> Fitted:
    """``method``'s kernel compiled for ``args`` with the largest blocks that fit the budget.

    Args:
      f, method, options: as for :func:`._kernel.compute`; ``options.block_size``, when set,
        is used as is.
      args: ``(x1, x2, params)``.
      lowered: the program already lowered at :func:`first_block` (reused, not traced again).
    """
    start = first_block(options)

    def compile_at(block: int | None):
        if block == start and lowered is not None:
            return lowered.compile()
        opts = dataclasses.replace(options, block_size=block)
        return lower(functools.partial(compute, f, method, opts), *args).compile()

    if options.block_size is not None:
        compiled = compile_at(start)
        return Fitted(compiled, start, peak_bytes(compiled))
    basis = basis_size(f, method, options, *args)
    return fit_blocks(compile_at, memory_budget(options), basis)


def first_block(options: Options) -> int:
    """The block size a kernel is first lowered at: the caller's, or every vector at once."""
    return UNBLOCKED if options.block_size is None else options.block_size


def at_block(options: Options, block_size: int | None) -> Options:
    """``options`` with the block size a fit chose (None: left to the estimate)."""
    if block_size is None or options.block_size is not None:
        return options
    return dataclasses.replace(options, block_size=block_size)
