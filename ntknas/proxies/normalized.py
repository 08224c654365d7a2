"""Scale-free reads of the full NTK: its correlation matrix and the shape of its spectrum.

The raw condition number and trace mix two things: how well the kernel separates examples and
outputs, and its overall scale (which grows with width, depth and the number of parameters). These
proxies remove the scale:

- ``ntk_corr_cond``: λmax/λmin of the correlation matrix ``D^-1/2 K D^-1/2`` (``D = diag K``),
  i.e. the condition number once every (example, logit) row has unit norm;
- ``ntk_eff_rank``: the effective rank ``exp(H(λ / Σλ))`` (Roy & Vetterli, 2007), between 1 (one
  direction dominates) and N·O (a flat spectrum);
- ``ntk_top_share``: ``λmax / trace``, the share of the kernel's mass in its top direction.

Example:
  >>> normalized_proxies(K)["ntk_corr_cond"]   # K: (N, N, O, O)
"""

from __future__ import annotations

import numpy as np

from .. import ntk
from ._spectrum import Spectrum, spectrum


def normalized_proxies(kernel, eps: float | None = None) -> dict[str, float]:
    """The scale-free proxies of one full (N, N, O, O) kernel (see the module docstring).

    Args:
      kernel: (N, N, O, O) NTK of a batch with itself.
      eps: relative threshold for the condition number (default: epsilon of ``kernel``'s dtype).
    """
    k = np.asarray(kernel)
    if eps is None:
        eps = float(np.finfo(k.dtype).eps)
    m = ntk.as_matrix(k).astype(np.float64)
    return scale_free_proxies(m, spectrum(m, eps), eps)


def scale_free_proxies(matrix: np.ndarray, full: Spectrum, eps: float) -> dict[str, float]:
    """The scale-free proxies from the (N·O, N·O) float64 kernel matrix and its spectrum.

    Args:
      matrix: :func:`ntknas.ntk.as_matrix` of the kernel, in float64.
      full: ``spectrum(matrix, eps)``, computed once by the caller.
      eps: relative threshold for the correlation matrix's condition number.
    """
    diag = np.diag(matrix)
    scale = np.where(diag > 0, 1.0 / np.sqrt(np.where(diag > 0, diag, 1.0)), 0.0)
    corr = spectrum(matrix * scale[:, None] * scale[None, :], eps)
    lam = np.clip(full.eigenvalues, 0.0, None)
    total = lam.sum()
    if total > 0:
        p = lam[lam > 0] / total
        eff_rank = float(np.exp(-(p * np.log(p)).sum()))
        top_share = float(lam[-1] / total)
    else:
        eff_rank, top_share = float("nan"), float("nan")
    return {"ntk_corr_cond": corr.cond, "ntk_eff_rank": eff_rank, "ntk_top_share": top_share}
