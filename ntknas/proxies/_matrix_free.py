"""Spectra of the (N·O)×(N·O) NTK without forming it: Lanczos, Hutchinson and SLQ.

For O=1000 logits the kernel matrix of even a few examples is too large to form and diagonalize
cheaply; everything here only applies ``v ↦ Θ v`` (:func:`ntknas.ntk.ntk_vp_fn`: one VJP and one
JVP, compiled once), so memory is that of one forward and backward pass.

- :func:`lanczos`: ``steps`` Lanczos iterations with full reorthogonalization (float64, host).
  The extreme Ritz values converge first: λmax in a few steps, λmin (and so the condition number)
  needs more on clustered spectra; ``steps = N·O`` is exact.
- :func:`hutchinson_trace`: ``E[zᵀΘz] = tr Θ`` over Rademacher probes.
- :func:`exact_trace`: ``Σ_{n,o} Θ[n,n,o,o]`` by the engine with both output axes diagonal
  (N·O VJPs, no N² term): exact, and usually cheap enough.
- :func:`slq_effective_rank`: the entropy effective rank ``exp(-Σ p_i log p_i)``,
  ``p_i = λ_i / Σλ`` (Roy & Vetterli 2007), by stochastic Lanczos quadrature.

Example:
  >>> op = kernel_operator(f, x, params)
  >>> s = matrix_free_spectrum(op, steps=op.dim)   # steps=op.dim is exact
  >>> s.cond, s.trace, s.effective_rank
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import jax
import numpy as np

from .. import ntk


@dataclass(frozen=True)
class KernelOperator:
    """``v ↦ Θ(x, x) v`` on flat vectors of length ``dim = N·O`` (row order of ``as_matrix``)."""

    matvec: Callable[[np.ndarray], np.ndarray]
    dim: int
    f: Callable
    x: object
    params: object


def kernel_operator(f: Callable, x, params, precision: str = "highest") -> KernelOperator:
    """The NTK of ``f`` on the batch ``x`` as a flat linear operator (single-array output).

    Raises:
      ValueError: ``f`` returns a pytree rather than one ``(N, O)`` array.
    """
    out = jax.eval_shape(f, params, x)
    if not hasattr(out, "shape"):
        raise ValueError("matrix-free spectra need f to return one array, not a pytree")
    mvp = ntk.ntk_vp_fn(f, precision=precision)
    shape, dtype = out.shape, out.dtype

    def matvec(v: np.ndarray) -> np.ndarray:
        u = mvp(np.asarray(v, dtype).reshape(shape), x, None, params)
        return np.asarray(u, np.float64).ravel()

    return KernelOperator(matvec, math.prod(shape), f, x, params)


def lanczos(matvec: Callable, dim: int, steps: int, start: np.ndarray):
    """``steps`` Lanczos iterations from ``start`` with full reorthogonalization.

    Returns:
      ``(alpha, beta)``: the diagonal and off-diagonal of the tridiagonal T (fewer than
      ``steps`` when an invariant subspace is found first).
    """
    steps = min(steps, dim)
    q = np.asarray(start, np.float64)
    q = q / np.linalg.norm(q)
    basis = np.zeros((steps, dim))
    alpha, beta = [], []
    for j in range(steps):
        basis[j] = q
        w = matvec(q)
        a = float(w @ q)
        alpha.append(a)
        w = w - basis[: j + 1].T @ (basis[: j + 1] @ w)  # full reorthogonalization, twice
        w = w - basis[: j + 1].T @ (basis[: j + 1] @ w)
        b = float(np.linalg.norm(w))
        if j == steps - 1 or b <= 1e-12 * max(abs(a), 1e-300):
            break
        beta.append(b)
        q = w / b
    return np.array(alpha), np.array(beta)


def _ritz(alpha, beta):
    import scipy.linalg

    if len(alpha) == 1:
        return alpha.copy(), np.ones((1, 1))
    return scipy.linalg.eigh_tridiagonal(alpha, beta)


def extreme_eigenvalues(op: KernelOperator, steps: int, seed: int = 0) -> tuple[float, float]:
    """(λmin, λmax) estimated by ``steps`` Lanczos iterations from a random start."""
    start = np.random.default_rng(seed).standard_normal(op.dim)
    theta, _ = _ritz(*lanczos(op.matvec, op.dim, steps, start))
    return float(theta[0]), float(theta[-1])


def _rademacher(rng, dim):
    return rng.integers(0, 2, dim) * 2.0 - 1.0


def hutchinson_trace(op: KernelOperator, probes: int, seed: int = 0) -> float:
    """``tr Θ`` as the mean of ``zᵀΘz`` over ``probes`` Rademacher vectors."""
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(probes):
        z = _rademacher(rng, op.dim)
        total += float(z @ op.matvec(z))
    return total / probes


def exact_trace(op: KernelOperator) -> float:
    """``Σ_{n,o} Θ[n,n,o,o]`` by the engine (both output axes diagonal: no N²·O² kernel)."""
    out = jax.eval_shape(op.f, op.params, op.x)
    axes = tuple(range(len(out.shape)))
    diag = ntk.ntk_fn(op.f, diagonal_axes=axes)(op.x, None, op.params)
    return float(np.sum(np.asarray(diag, np.float64)))


def slq_effective_rank(
    op: KernelOperator, probes: int, steps: int, trace: float | None = None, seed: int = 0
) -> float:
    """``exp(-Σ p_i log p_i)`` with ``p_i = λ_i / tr Θ``, by stochastic Lanczos quadrature.

    ``Σ λ log λ ≈ dim · mean_z Σ_j τ_j² θ_j log θ_j`` over ``probes`` Rademacher starts, with Ritz
    values θ_j and first components τ_j of ``steps``-step Lanczos. ``trace`` (e.g. exact) is used
    if given, else estimated from the same quadrature.
    """
    rng = np.random.default_rng(seed)
    s_log, s_tr = 0.0, 0.0
    for _ in range(probes):
        z = _rademacher(rng, op.dim)
        theta, vecs = _ritz(*lanczos(op.matvec, op.dim, steps, z))
        tau2 = vecs[0] ** 2
        theta = np.clip(theta, 1e-300, None)  # a PSD kernel: negative Ritz values are round-off
        s_log += float(tau2 @ (theta * np.log(theta)))
        s_tr += float(tau2 @ theta)
    s_log *= op.dim / probes
    t = trace if trace is not None else s_tr * op.dim / probes
    if t <= 0:
        return 0.0
    return float(math.exp(math.log(t) - s_log / t))


@dataclass(frozen=True)
class MatrixFreeSpectrum:
    """Proxies read from a kernel operator (``source`` says how: shown in the proxies' output)."""

    lambda_min: float
    lambda_max: float
    trace: float
    effective_rank: float
    matvecs: int
    source: str

    @property
    def cond(self) -> float:
        """``λmax / λmin`` (``inf`` when λmin is not positive to the estimate's precision)."""
        if self.lambda_max <= 0 or self.lambda_min <= self.lambda_max * 1e-7:
            return math.inf
        return self.lambda_max / self.lambda_min


def matrix_free_spectrum(
    op: KernelOperator, steps: int = 64, probes: int = 8, slq_steps: int = 16, seed: int = 0
) -> MatrixFreeSpectrum:
    """λmin, λmax, condition number, exact trace and SLQ effective rank of ``op``.

    Args:
      op: from :func:`kernel_operator`.
      steps: Lanczos iterations for the extreme eigenvalues (``op.dim`` is exact).
      probes, slq_steps: SLQ probes and Lanczos steps per probe for the effective rank.
      seed: of the random starts and probes.
    """
    steps = min(steps, op.dim)
    start = np.random.default_rng(seed).standard_normal(op.dim)
    theta, _ = _ritz(*lanczos(op.matvec, op.dim, steps, start))
    trace = exact_trace(op)
    if steps == op.dim:  # the Ritz values are the whole spectrum: no need to sample
        p = np.clip(theta, 0.0, None) / trace
        p = p[p > 0]
        erank, matvecs = float(np.exp(-(p * np.log(p)).sum())), steps
        source = f"matrix-free: Lanczos {steps} steps (exact), exact trace"
    else:
        slq_steps = min(slq_steps, op.dim)
        erank = slq_effective_rank(op, probes, slq_steps, trace, seed + 1)
        matvecs = steps + probes * slq_steps
        source = f"matrix-free: Lanczos {steps} steps, exact trace, SLQ {probes}x{slq_steps}"
    return MatrixFreeSpectrum(float(theta[0]), float(theta[-1]), trace, erank, matvecs, source)
