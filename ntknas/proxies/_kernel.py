"""The proxies read from one full (N, N, O, O) NTK: its spectrum and its pseudo-NTKs."""

from __future__ import annotations

import numpy as np

from .. import ntk
from ._registry import PSEUDO_PREFIX
from ._spectrum import spectrum
from .normalized import scale_free_proxies


def kernel_proxies(kernel, n_params: int, eps: float | None = None) -> dict[str, float]:
    """All NTK proxies of one full kernel.

    Args:
      kernel: (N, N, O, O) NTK of a batch with itself (numpy or jax, any float dtype).
      n_params: the number of parameters the kernel was taken over.
      eps: threshold for the condition numbers (default: epsilon of ``kernel``'s dtype).

    Returns:
      ``{name: float}`` for every proxy of the ``ntk``, ``pntk`` and ``scale-free ntk`` families
      of :data:`PROXIES`.

    Raises:
      ValueError: a kernel that is not (N, N, O, O) with matching N and O.
      NonFiniteKernelError: NaN or inf in the kernel.
    """
    k = np.asarray(kernel)
    if k.ndim != 4 or k.shape[0] != k.shape[1] or k.shape[2] != k.shape[3]:
        raise ValueError(f"expected an (N, N, O, O) kernel, got shape {k.shape}")
    if eps is None:
        eps = float(np.finfo(k.dtype).eps)
    m = ntk.as_matrix(k).astype(np.float64)  # rows (example, logit)
    full = spectrum(m, eps)  # the one eigendecomposition of the full kernel
    out = {
        "ntk_cond": full.cond,
        "ntk_trace": full.trace,
        "ntk_trace_per_param": full.trace / max(int(n_params), 1),
        "ntk_eig_min": full.lambda_min,
        "ntk_eig_max": full.lambda_max,
    }
    pseudo = ntk.pseudo_kernels(k)
    for kind, prefix in PSEUDO_PREFIX.items():
        s = spectrum(np.asarray(pseudo[kind]), eps)
        out[f"{prefix}_cond"] = s.cond
        out[f"{prefix}_trace"] = s.trace
    out.update(scale_free_proxies(m, full, eps))
    return out
