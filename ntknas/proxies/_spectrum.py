"""Spectra of (N·O)×(N·O) kernels in float64: eigenvalues, condition number, trace."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class NonFiniteKernelError(ValueError):
    """The kernel holds NaN or inf entries (the network blew up at initialization)."""


@dataclass(frozen=True)
class Spectrum:
    """Eigenvalues of a symmetric kernel matrix and the proxies read from them.

    Attributes:
      eigenvalues: ascending, float64, shape (M,).
      eps: relative threshold below which ``λmin`` counts as zero (the compute dtype's epsilon).
    """

    eigenvalues: np.ndarray
    eps: float

    @property
    def lambda_min(self) -> float:
        return float(self.eigenvalues[0])

    @property
    def lambda_max(self) -> float:
        return float(self.eigenvalues[-1])

    @property
    def trace(self) -> float:
        return float(self.eigenvalues.sum())

    @property
    def cond(self) -> float:
        """``λmax / λmin``; ``inf`` when ``λmin <= λmax·eps`` (singular to working precision)."""
        lo, hi = self.lambda_min, self.lambda_max
        if hi <= 0.0 or lo <= hi * self.eps:
            return float("inf")
        return hi / lo


def spectrum(matrix, eps: float | None = None) -> Spectrum:
    """Eigenvalues of a symmetric PSD kernel matrix, computed in float64 with scipy.

    Args:
      matrix: (M, M) array (any float dtype, numpy or jax). It is symmetrized as ``(K + Kᵀ)/2``
        in float64 first, so round-off asymmetry from float32 contractions does not matter.
      eps: relative threshold for :attr:`Spectrum.cond`; defaults to the machine epsilon of the
        dtype the matrix was computed in (a float32 kernel cannot resolve ``λmin < λmax·2⁻²³``).

    Returns:
      A :class:`Spectrum`.

    Raises:
      ValueError: the matrix is not square 2-D.
      NonFiniteKernelError: the matrix holds NaN or inf.
    """
    import scipy.linalg

    m = np.asarray(matrix)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"spectrum needs a square (M, M) matrix, got shape {m.shape}")
    if eps is None:
        eps = float(np.finfo(m.dtype).eps) if np.issubdtype(m.dtype, np.floating) else 2.0**-52
    m = m.astype(np.float64)
    if not np.all(np.isfinite(m)):
        bad = int(np.size(m) - np.isfinite(m).sum())
        raise NonFiniteKernelError(f"kernel has {bad} non-finite entries (NaN or inf)")
    m = 0.5 * (m + m.T)
    eig = scipy.linalg.eigvalsh(m, check_finite=False)
    return Spectrum(np.asarray(eig, dtype=np.float64), eps)
