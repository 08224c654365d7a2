"""Training-free proxies read from one full (N, N, O, O) NTK: the registry and its evaluation.

Every proxy has a name users type (``--objective ntk_cond:min``, ``--sort ntk_trace``), a one-line
description and the direction that earlier work optimizes it in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import ntk
from ._spectrum import spectrum


@dataclass(frozen=True)
class Proxy:
    name: str
    direction: str  # "minimize" or "maximize": what earlier work prefers
    description: str


PROXIES: dict[str, Proxy] = {}


def _register(name: str, direction: str, description: str) -> None:
    PROXIES[name] = Proxy(name, direction, description)


# The full O×O NTK, as an (N·O)×(N·O) matrix.
_register("ntk_cond", "minimize", "λmax/λmin of the full NTK (TE-NAS; inf if singular)")
_register("ntk_trace", "maximize", "trace of the full NTK")
_register("ntk_trace_per_param", "maximize", "trace of the full NTK divided by the parameters")
_register("ntk_eig_min", "maximize", "smallest eigenvalue of the full NTK")
_register("ntk_eig_max", "minimize", "largest eigenvalue of the full NTK")
# Pseudo-NTKs (N×N) derived from the full kernel (see ntknas.ntk.pseudo_kernels).
_PSEUDO_PREFIX = {"trace": "pntk_trace", "single_logit": "pntk_logit", "sum_of_logits": "pntk_sum"}
for _kind, _prefix in _PSEUDO_PREFIX.items():
    _register(f"{_prefix}_cond", "minimize", f"λmax/λmin of the {_kind} pseudo-NTK")
    _register(f"{_prefix}_trace", "maximize", f"trace of the {_kind} pseudo-NTK")
# Model size and cost.
_register("params", "minimize", "number of trainable parameters")
_register("flops", "minimize", "forward FLOPs per example (XLA cost analysis)")


def kernel_proxies(kernel, n_params: int, eps: float | None = None) -> dict[str, float]:
    """All NTK proxies of one full kernel.

    Args:
      kernel: (N, N, O, O) NTK of a batch with itself (numpy or jax, any float dtype).
      n_params: the number of parameters the kernel was taken over.
      eps: threshold for the condition numbers (default: epsilon of ``kernel``'s dtype).

    Returns:
      ``{name: float}`` for every proxy in :data:`PROXIES` except ``params`` and ``flops``.

    Raises:
      ValueError: a kernel that is not (N, N, O, O) with matching N and O.
      NonFiniteKernelError: NaN or inf in the kernel.
    """
    k = np.asarray(kernel)
    if k.ndim != 4 or k.shape[0] != k.shape[1] or k.shape[2] != k.shape[3]:
        raise ValueError(f"expected an (N, N, O, O) kernel, got shape {k.shape}")
    if eps is None:
        eps = float(np.finfo(k.dtype).eps)
    n, _, o, _ = k.shape
    full = spectrum(k.transpose(0, 2, 1, 3).reshape(n * o, n * o), eps)
    out = {
        "ntk_cond": full.cond,
        "ntk_trace": full.trace,
        "ntk_trace_per_param": full.trace / max(int(n_params), 1),
        "ntk_eig_min": full.lambda_min,
        "ntk_eig_max": full.lambda_max,
    }
    pseudo = ntk.pseudo_kernels(k)
    for kind, prefix in _PSEUDO_PREFIX.items():
        s = spectrum(np.asarray(pseudo[kind]), eps)
        out[f"{prefix}_cond"] = s.cond
        out[f"{prefix}_trace"] = s.trace
    from .normalized import normalized_proxies  # registered there, next to their definitions

    out.update(normalized_proxies(k, eps))
    return out
