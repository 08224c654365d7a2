"""Spectra of the (N·O)×(N·O) NTK without forming it: Lanczos, Hutchinson and SLQ.

For O=1000 logits the kernel matrix of even a few examples is too large to form and diagonalize
cheaply; everything here only applies ``v ↦ Θ v`` (:func:`ntknas.ntk.ntk_vp_fn`: one VJP and one
JVP, compiled once), so memory is that of one forward and backward pass.

- :func:`lanczos`: ``steps`` Lanczos iterations with full reorthogonalization (float64, host).
  The extreme Ritz values converge first: λmax in a few steps, λmin (and so the condition number)
  needs more on clustered spectra; ``steps = N·O`` is exact.
- :func:`hutchinson_trace`: ``E[zᵀΘz] = tr Θ`` over Rademacher probes.
- :func:`deflated_trace`: ``tr Θ = tr(QᵀΘQ) + tr((I-P)Θ(I-P))`` with ``Q`` the Lanczos basis
  already computed for the extreme eigenvalues (``P = QQᵀ``): the first term is exact (the sum of
  the tridiagonal's diagonal), Hutchinson probes projected off ``Q`` estimate the second, which
  no longer holds the kernel's dominant directions (Hutch++, Meyer et al. 2021, with the Krylov
  basis as the sketch).
- :func:`exact_trace`: ``Σ_{n,o} Θ[n,n,o,o]`` by the engine with both output axes diagonal
  (N·O VJPs, no N² term): exact, and usually cheap enough.
- :func:`slq_effective_rank`: the entropy effective rank ``exp(-Σ p_i log p_i)``,
  ``p_i = λ_i / Σλ`` (Roy & Vetterli 2007), by stochastic Lanczos quadrature.
- :func:`operator_proxies`: the kernel proxies of :func:`ntknas.proxies.kernel_proxies` that a
  matrix-free spectrum gives (the scorer uses it above ``ScoreOptions.matrix_free_above``).

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


def kernel_operator(
    f: Callable, x, params, precision: str = "highest", mvp: Callable | None = None
) -> KernelOperator:
    """The NTK of ``f`` on the batch ``x`` as a flat linear operator (single-array output).

    Args:
      mvp: ``ntk.ntk_vp_fn(f, precision)`` made earlier, to reuse its compilation (it takes the
        parameters and inputs as arguments); made here when None.

    Raises:
      ValueError: ``f`` returns a pytree rather than one ``(N, O)`` array.
    """
    out = jax.eval_shape(f, params, x)
    if not hasattr(out, "shape"):
        raise ValueError("matrix-free spectra need f to return one array, not a pytree")
    mvp = mvp or ntk.ntk_vp_fn(f, precision=precision)
    shape, dtype = out.shape, out.dtype

    def matvec(v: np.ndarray) -> np.ndarray:
        u = mvp(np.asarray(v, dtype).reshape(shape), x, None, params)
        return np.asarray(u, np.float64).ravel()

    return KernelOperator(matvec, math.prod(shape), f, x, params)


def lanczos(
    matvec: Callable, dim: int, steps: int, start: np.ndarray, basis_out: list | None = None
):
    """``steps`` Lanczos iterations from ``start`` with full reorthogonalization.

    Args:
      basis_out: if a list, ``(Q, beta_next)`` is appended to it: the orthonormal Krylov basis
        (rows, ``len(alpha)`` of them) and the norm of the next residual (0 when the basis spans
        an invariant subspace), from which the Ritz pairs' residuals follow.

    Returns:
      ``(alpha, beta)``: the diagonal and off-diagonal of the tridiagonal T (fewer than
      ``steps`` when an invariant subspace is found first).
    """
    steps = min(steps, dim)
    q = np.asarray(start, np.float64)
    q = q / np.linalg.norm(q)
    basis = np.zeros((steps, dim))
    alpha, beta = [], []
    b = 0.0
    for j in range(steps):
        basis[j] = q
        w = matvec(q)
        a = float(w @ q)
        alpha.append(a)
        w = w - basis[: j + 1].T @ (basis[: j + 1] @ w)  # full reorthogonalization, twice
        w = w - basis[: j + 1].T @ (basis[: j + 1] @ w)
        b = float(np.linalg.norm(w))
        if b <= 1e-12 * max(abs(a), 1e-300):
            b = 0.0
            break
        if j == steps - 1:
            break
        beta.append(b)
        q = w / b
    if basis_out is not None:
        basis_out.append((basis[: len(alpha)], b))
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


def deflated_trace(
    op: KernelOperator, basis: np.ndarray, alpha: np.ndarray, probes: int, seed: int = 0
) -> float:
    """``tr Θ``: exact on the span of a Lanczos basis, Hutchinson off it.

    ``tr Θ = Σ_j q_jᵀΘq_j + E[z̃ᵀΘz̃]`` with ``z̃ = (I - QᵀQ) z`` for Rademacher ``z`` (the cross
    terms of ``P Θ (I-P)`` have zero trace). ``q_jᵀΘq_j`` is Lanczos' ``alpha_j``, so this costs
    ``probes`` matvecs; exact once the basis spans the space.

    Args:
      basis, alpha: the rows Q and the diagonal of T from :func:`lanczos` (``basis_out``).
    """
    q = np.asarray(basis, np.float64).reshape(-1, op.dim)
    inside = float(np.sum(alpha))
    if len(q) >= op.dim:
        return inside
    rng = np.random.default_rng(seed)
    rest = 0.0
    for _ in range(probes):
        z = _rademacher(rng, op.dim)
        z = z - q.T @ (q @ z)
        rest += float(z @ op.matvec(z))
    return inside + rest / probes


def exact_trace(op: KernelOperator) -> float:
    """``Σ_{n,o} Θ[n,n,o,o]`` by the engine (both output axes diagonal: no N²·O² kernel)."""
    out = jax.eval_shape(op.f, op.params, op.x)
    axes = tuple(range(len(out.shape)))
    diag = ntk.ntk_fn(op.f, diagonal_axes=axes)(op.x, None, op.params)
    return float(np.sum(np.asarray(diag, np.float64)))


def _xlogx(theta: np.ndarray) -> np.ndarray:
    theta = np.clip(theta, 1e-300, None)  # a PSD kernel: negative Ritz values are round-off
    return theta * np.log(theta)


def slq_effective_rank(
    op: KernelOperator,
    probes: int,
    steps: int,
    trace: float | None = None,
    seed: int = 0,
    deflate: tuple[np.ndarray, np.ndarray] | None = None,
) -> float:
    """``exp(-Σ p_i log p_i)`` with ``p_i = λ_i / tr Θ``, by stochastic Lanczos quadrature.

    ``Σ λ log λ ≈ t · Σ_z Σ_j τ_j² θ_j log θ_j / Σ_z Σ_j τ_j² θ_j`` over ``probes`` Rademacher
    starts ``z`` (weights ``τ_j² = ‖z‖²·s_{1j}²``), with Ritz values θ_j and eigenvectors s of
    ``steps``-step Lanczos from ``z``: the quadrature's λ-weighted mean of ``log λ`` times the
    trace ``t``. ``trace`` (e.g. exact or deflated) is used if given, else the same quadrature's.

    Args:
      deflate: ``(Y, θ)``: converged eigenpairs (orthonormal rows ``Y``, e.g. from
        :func:`converged_ritz_pairs`). Their terms are taken exactly and the probes run on
        ``(I-P)Θ(I-P)``, ``P = YᵀY``: the few large eigenvalues that dominate ``Σ λ log λ``
        then carry no sampling error.
    """
    rng = np.random.default_rng(seed)
    y = np.zeros((0, op.dim)) if deflate is None else np.asarray(deflate[0]).reshape(-1, op.dim)
    exact_log = 0.0 if deflate is None else float(_xlogx(np.asarray(deflate[1])).sum())
    exact_tr = 0.0 if deflate is None else float(np.sum(deflate[1]))

    def rest(v):
        v = v - y.T @ (y @ v)
        w = op.matvec(v)
        return w - y.T @ (y @ w)

    s_log, s_tr = 0.0, 0.0
    for _ in range(probes):
        z = _rademacher(rng, op.dim)
        z = z - y.T @ (y @ z)
        norm2 = float(z @ z)
        if norm2 <= 0:
            continue
        theta, vecs = _ritz(*lanczos(rest, op.dim, steps, z))
        tau2 = vecs[0] ** 2 * norm2
        s_log += float(tau2 @ _xlogx(theta))
        s_tr += float(tau2 @ theta)
    t = trace if trace is not None else exact_tr + s_tr / probes
    if t <= 0:
        return 0.0
    if s_tr > 0:
        # ratio estimator: the probes' λ-weighted mean of log λ over the rest of the spectrum,
        # times the rest's trace. A probe that sees more of the spectrum scales both sums, so
        # their ratio varies far less than either (the trace is known better than one probe's).
        s_log = exact_log + s_log / s_tr * max(t - exact_tr, 0.0)
    else:
        s_log = exact_log
    return float(math.exp(math.log(t) - s_log / t))


def converged_ritz_pairs(
    alpha: np.ndarray, beta: np.ndarray, basis: np.ndarray, beta_next: float, rtol: float = 1e-3
) -> tuple[np.ndarray, np.ndarray]:
    """The Ritz pairs of a Lanczos run whose residual ``‖Θy - θy‖ = β_next·|s_last|`` is at most
    ``rtol·θ`` (their eigenvalue errors are then about ``rtol²·θ`` or less).

    Returns:
      ``(Y, θ)``: Ritz vectors as orthonormal rows, and their values.
    """
    theta, s = _ritz(alpha, beta)
    ok = (beta_next * np.abs(s[-1]) <= rtol * np.abs(theta)) & (theta > 0)
    return (s[:, ok].T @ basis), theta[ok]


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
    op: KernelOperator,
    steps: int = 64,
    probes: int = 8,
    slq_steps: int = 16,
    seed: int = 0,
    trace: str = "exact",
) -> MatrixFreeSpectrum:
    """λmin, λmax, condition number, trace and SLQ effective rank of ``op``.

    Args:
      op: from :func:`kernel_operator`.
      steps: Lanczos iterations for the extreme eigenvalues (``op.dim`` is exact).
      probes, slq_steps: SLQ probes and Lanczos steps per probe for the effective rank; with
        ``trace="deflated"`` also the trace's probes.
      seed: of the random starts and probes.
      trace: ``"exact"`` (:func:`exact_trace`: N·O single-output gradients, about the cost of
        the kernel itself by Jacobian contraction) or ``"deflated"`` (:func:`deflated_trace` on
        the Lanczos basis: ``probes`` matvecs).

    Raises:
      ValueError: an unknown ``trace``.
    """
    if trace not in ("exact", "deflated"):
        raise ValueError(f"unknown trace estimator {trace!r}; choose 'exact' or 'deflated'")
    steps = min(steps, op.dim)
    start = np.random.default_rng(seed).standard_normal(op.dim)
    run: list = []
    alpha, beta = lanczos(op.matvec, op.dim, steps, start, basis_out=run)
    basis, beta_next = run[0]
    theta, _ = _ritz(alpha, beta)
    exact = steps == op.dim  # the Ritz values are the whole spectrum: no need to sample
    if trace == "exact":
        tr, matvecs, how = exact_trace(op), len(alpha), "exact trace"
    elif exact:
        tr, matvecs, how = float(np.sum(alpha)), len(alpha), "trace of T"
    else:
        tr = deflated_trace(op, basis, alpha, probes, seed + 2)
        matvecs, how = len(alpha) + probes, f"deflated Hutchinson trace ({probes} probes)"
    if exact:
        p = np.clip(theta, 0.0, None) / tr
        p = p[p > 0]
        erank = float(np.exp(-(p * np.log(p)).sum()))
        source = f"matrix-free: Lanczos {steps} steps (exact), {how}"
    else:
        slq_steps = min(slq_steps, op.dim)
        pairs = converged_ritz_pairs(alpha, beta, basis, beta_next)
        erank = slq_effective_rank(op, probes, slq_steps, tr, seed + 1, deflate=pairs)
        matvecs += probes * slq_steps
        source = (
            f"matrix-free: Lanczos {steps} steps, {how}, SLQ {probes}x{slq_steps} "
            f"off {len(pairs[1])} converged eigenpairs"
        )
    return MatrixFreeSpectrum(float(theta[0]), float(theta[-1]), tr, erank, matvecs, source)


# What a matrix-free spectrum cannot give without the kernel's entries: the pseudo-NTKs and the
# correlation matrix (they are NaN in operator_proxies' output, and its source says so).
_NEEDS_ENTRIES = ("pntk_", "ntk_corr_cond")


def operator_proxies(
    op: KernelOperator,
    n_params: int,
    steps: int = 256,
    probes: int = 16,
    slq_steps: int = 8,
    seed: int = 0,
) -> tuple[dict[str, float], str]:
    """The proxies of :func:`ntknas.proxies.kernel_proxies` read from a kernel operator.

    ``ntk_cond`` (zero λmin to float32 precision counts as singular: ``inf``, as for a formed
    kernel), ``ntk_trace`` (deflated Hutchinson), ``ntk_trace_per_param``, ``ntk_eig_min``,
    ``ntk_eig_max``, ``ntk_eff_rank`` (SLQ) and ``ntk_top_share``; the pseudo-NTK proxies and
    ``ntk_corr_cond`` are NaN. ``steps + probes + probes·slq_steps`` matvecs (400 by default).
    λmax converges in a few steps; λmin is the smallest Ritz value, an upper bound on the true
    one that converges only once the Krylov space has resolved the spread of large eigenvalues
    above it (an NTK with O outputs has many), so most of the matvecs go to the one Lanczos run:
    it also deflates the trace's probes and gives the converged eigenpairs that SLQ takes exactly,
    which lets SLQ run short (``experiments/matrix_free_accuracy.py`` measures the errors).

    Returns:
      ``(proxies, source)``: ``source`` names the estimators and what was left out.
    """
    from ._kernel import kernel_proxies

    s = matrix_free_spectrum(op, steps, probes, slq_steps, seed, trace="deflated")
    eps = float(np.finfo(np.float32).eps)
    lo, hi = s.lambda_min, s.lambda_max
    cond = math.inf if hi <= 0 or lo <= hi * eps else hi / lo
    # the same keys, in the same order, as a formed kernel's proxies (read off a 1x1 kernel)
    out = dict.fromkeys(kernel_proxies(np.ones((1, 1, 1, 1)), 1), math.nan)
    out.update(
        ntk_cond=cond,
        ntk_trace=s.trace,
        ntk_trace_per_param=s.trace / max(int(n_params), 1),
        ntk_eig_min=lo,
        ntk_eig_max=hi,
        ntk_eff_rank=s.effective_rank,
        ntk_top_share=hi / s.trace if s.trace > 0 else math.nan,
    )
    left = sorted(n for n in out if n.startswith(_NEEDS_ENTRIES))
    return out, f"{s.source}; {s.matvecs} matvecs; not computed: {', '.join(left)}"
