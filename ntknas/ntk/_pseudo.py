"""Pseudo-NTKs used by earlier NAS work, derived from the full O×O kernel or computed directly.

For a kernel ``K[n1, n2, o1, o2] = <∂f_{o1}(x_{n1})/∂θ, ∂f_{o2}(x_{n2})/∂θ>``:

- trace:          ``K_tr[n1, n2]  = Σ_o K[n1, n2, o, o]``            (``trace_axes=(-1,)``)
- single logit k: ``K_k[n1, n2]   = K[n1, n2, k, k]``                (the NTK of ``f_k``)
- sum of logits:  ``K_sum[n1, n2] = Σ_{o1, o2} K[n1, n2, o1, o2]``   (the NTK of ``f · 1``, as in
  TE-NAS; unlike the trace it includes the cross-logit terms)
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp

from ._api import KernelFn, ntk_fn
from ._kernel import NtkMethod

PSEUDO_KINDS = ("trace", "single_logit", "sum_of_logits")


def _check(kernel):
    if kernel.ndim != 4:
        raise ValueError(f"expected an (N1, N2, O, O) kernel, got shape {kernel.shape}")


def trace_kernel(kernel):
    """``Σ_o K[n1, n2, o, o]``: (N1, N2, O, O) -> (N1, N2)."""
    _check(kernel)
    return jnp.einsum("abii->ab", kernel)


def single_logit_kernel(kernel, logit: int = 0):
    """``K[n1, n2, k, k]``, the NTK of logit ``k`` alone: (N1, N2, O, O) -> (N1, N2)."""
    _check(kernel)
    if not -kernel.shape[-1] <= logit < kernel.shape[-1]:
        raise ValueError(f"logit {logit} out of range for O={kernel.shape[-1]}")
    return kernel[:, :, logit, logit]


def sum_of_logits_kernel(kernel):
    """``Σ_{o1,o2} K[n1, n2, o1, o2]``, the NTK of the summed logits: -> (N1, N2)."""
    _check(kernel)
    return kernel.sum(axis=(-2, -1))


def pseudo_ntk_fn(
    f: Callable, kind: str, logit: int = 0, method: NtkMethod | str = "auto", vmap_axes=0
) -> KernelFn:
    """A kernel function for one pseudo-NTK, computed without the full O×O kernel.

    Args:
      f: ``f(params, x)`` returning an array whose last axis is the logits.
      kind: one of ``"trace"``, ``"single_logit"``, ``"sum_of_logits"`` (see module docstring).
      logit: the logit for ``"single_logit"``.
      method, vmap_axes: as for :func:`ntk_fn`.

    Returns:
      ``kernel_fn(x1, x2=None, params)`` -> (N1, N2).
    """
    if kind == "trace":
        return ntk_fn(f, method=method, trace_axes=(-1,), vmap_axes=vmap_axes)
    if kind == "single_logit":
        return ntk_fn(lambda p, x: f(p, x)[..., logit], method=method, vmap_axes=vmap_axes)
    if kind == "sum_of_logits":
        return ntk_fn(lambda p, x: f(p, x).sum(axis=-1), method=method, vmap_axes=vmap_axes)
    raise ValueError(f"unknown pseudo-NTK kind {kind!r}; choose one of {PSEUDO_KINDS}")


def pseudo_kernels(kernel, logit: int = 0) -> dict[str, jnp.ndarray]:
    """All pseudo-NTKs of a full (N1, N2, O, O) kernel, by kind."""
    return {
        "trace": trace_kernel(kernel),
        "single_logit": single_logit_kernel(kernel, logit),
        "sum_of_logits": sum_of_logits_kernel(kernel),
    }
