"""Output-axis bookkeeping shared by every NTK method.

Convention: for one output leaf of shape ``(s_0, ..., s_{d-1})`` (axis 0 is usually the batch),
the kernel has, for every output axis ``i`` in order,
- nothing, if ``i`` is in ``trace_axes`` (summed over, with the same index on both sides);
- one axis of size ``s_i``, if ``i`` is in ``diagonal_axes`` (only the diagonal is kept);
- two axes ``(s_i of x1, s_i of x2)`` otherwise.

So an ``(N, O)`` output gives ``(N1, N2, O, O)`` by default, ``(N1, N2)`` with
``trace_axes=(-1,)`` and ``(N1, N2, O)`` with ``diagonal_axes=(-1,)``.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass

import jax.numpy as jnp

_LETTERS = string.ascii_letters


def normalize_axes(axes: Sequence[int] | int, ndim: int, name: str) -> tuple[int, ...]:
    """Returns ``axes`` as sorted non-negative ints, checked against ``ndim``."""
    if isinstance(axes, int):
        axes = (axes,)
    out = []
    for a in axes:
        if not isinstance(a, int):
            raise TypeError(f"{name} must be ints, got {a!r}")
        if not -ndim <= a < ndim:
            raise ValueError(f"{name} contains axis {a}, but the output has only {ndim} axes")
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{name} repeats an axis: {tuple(axes)}")
    return tuple(sorted(out))


@dataclass(frozen=True)
class OutputAxes:
    """Which output axes are traced, diagonal or paired, for an output of ``ndim`` axes."""

    ndim: int
    trace: tuple[int, ...]
    diagonal: tuple[int, ...]

    @classmethod
    def make(cls, ndim: int, trace_axes, diagonal_axes) -> OutputAxes:
        trace = normalize_axes(trace_axes, ndim, "trace_axes")
        diagonal = normalize_axes(diagonal_axes, ndim, "diagonal_axes")
        both = set(trace) & set(diagonal)
        if both:
            raise ValueError(f"axes {sorted(both)} are in both trace_axes and diagonal_axes")
        return cls(ndim, trace, diagonal)

    def letters(self, reserved: int = 0) -> tuple[str, str, str]:
        """Einsum letters for (output of x1, output of x2, kernel).

        Letters ``_LETTERS[:reserved]`` are left free for the caller (parameter axes etc.).
        """
        d = self.ndim
        if reserved + 2 * d > len(_LETTERS):
            raise ValueError("too many axes for einsum")
        a = _LETTERS[reserved : reserved + d]
        b = _LETTERS[reserved + d : reserved + 2 * d]
        lhs1, lhs2, out = [], [], []
        for i in range(d):
            if i in self.trace:
                lhs1.append(a[i])
                lhs2.append(a[i])
            elif i in self.diagonal:
                lhs1.append(a[i])
                lhs2.append(a[i])
                out.append(a[i])
            else:
                lhs1.append(a[i])
                lhs2.append(b[i])
                out.extend((a[i], b[i]))
        return "".join(lhs1), "".join(lhs2), "".join(out)

    def kernel_shape(self, shape1: Sequence[int], shape2: Sequence[int]) -> tuple[int, ...]:
        out = []
        for i in range(self.ndim):
            if i in self.trace:
                continue
            if i in self.diagonal:
                out.append(shape1[i])
            else:
                out.extend((shape1[i], shape2[i]))
        return tuple(out)

    def check_shapes(self, shape1: Sequence[int], shape2: Sequence[int]) -> None:
        if len(shape1) != len(shape2):
            raise ValueError(
                "f returns outputs of different rank on x1 and x2: "
                f"{tuple(shape1)} vs {tuple(shape2)}"
            )
        for i in self.trace + self.diagonal:
            if shape1[i] != shape2[i]:
                kind = "trace_axes" if i in self.trace else "diagonal_axes"
                raise ValueError(
                    f"output axis {i} is in {kind} but has size {shape1[i]} on x1 and "
                    f"{shape2[i]} on x2"
                )

    def reduce_full(self, full: jnp.ndarray) -> jnp.ndarray:
        """Applies trace/diagonal to a kernel laid out as (s0_1, ..., s_{d-1}_1, s0_2, ...).

        ``full[i1..., i2...] = <J1[i1], J2[i2]>`` for every pair of output entries.
        """
        lhs1, lhs2, out = self.letters()
        return jnp.einsum(f"{lhs1}{lhs2}->{out}", full)
