"""Cost model and method choice for ``method="auto"``.

Each candidate method is lowered (not compiled) for the given shapes and XLA's HLO cost analysis
gives its FLOPs and bytes accessed. Estimated seconds = FLOPs / peak + bytes / bandwidth, with
per-backend constants; where XLA gives nothing, an analytic model from the paper's Table 2 is used.
Choices are cached per (function, axes, batching, shapes, dtypes).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import jax

# Rough throughput per backend: (FLOP/s, bytes/s). Only their ratio matters for the choice.
_THROUGHPUT = {
    "cpu": (5e10, 1e10),
    "gpu": (5e13, 3e12),
    "tpu": (1e14, 1e12),
}


@dataclass(frozen=True)
class Estimate:
    """Estimated cost of one method for one call."""

    flops: float
    bytes: float
    seconds: float
    source: str  # "xla" or "analytic" or "error: ..."


@dataclass(frozen=True)
class Explanation:
    """What ``method="auto"`` chose and why (see :func:`ntknas.ntk.explain`)."""

    method: str
    estimates: dict[str, Estimate] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"auto -> {self.method}"]
        for name, e in sorted(self.estimates.items(), key=lambda kv: kv[1].seconds):
            lines.append(
                f"  {name:24s} {e.flops:12.4g} FLOPs {e.bytes:12.4g} bytes "
                f"~{e.seconds:.3g} s ({e.source})"
            )
        return "\n".join(lines)


# How much faster than the generic model a method's operations run. Structured derivatives spends
# its FLOPs in dense einsums (dot_general over input patches and cotangents), where the Jacobian
# contraction spends the same FLOPs in VJPs (conv-backprop-filter etc.): on CNNs with few outputs
# both count the same FLOPs, yet structured derivatives measured 1.5x faster (CPU, 3-conv CNN,
# 32x32, O=10), and it holds no N·O·P Jacobian.
_EFFICIENCY = {"structured_derivatives": 1.15}


def _seconds(flops: float, nbytes: float, method: str | None = None) -> float:
    peak, bw = _THROUGHPUT.get(jax.default_backend(), _THROUGHPUT["cpu"])
    return (flops / peak + nbytes / bw) / _EFFICIENCY.get(method, 1.0)


def xla_cost(fn: Callable, *args) -> tuple[float, float] | None:
    """(FLOPs, bytes accessed) of ``jax.jit(fn)`` lowered on abstract ``args``, or None."""
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), args)
    lowered = jax.jit(fn).lower(*abstract)
    cost = lowered.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    if not cost or "flops" not in cost:
        return None
    return float(cost["flops"]), float(cost.get("bytes accessed", 0.0))


def analytic_cost(method: str, n1: int, n2: int, o: int, p: int, fp: float) -> tuple[float, float]:
    """Paper Table 2 (time) with bytes ~ the largest array each method holds."""
    if method == "jacobian_contraction":
        return (n1 + n2) * o * fp + n1 * n2 * o * o * p, (n1 + n2) * o * p * 4
    if method == "ntk_vector_products":
        return n1 * n2 * o * fp * 2, n2 * o * p * 4
    # structured derivatives: N·O·[FP] + contraction of cotangents ~ N1·N2·O²·Y, Y ~ sqrt-ish of P
    return (n1 + n2) * o * fp + n1 * n2 * o * o * math.sqrt(p), (n1 + n2) * o * math.sqrt(p) * 4


def estimate(
    fn: Callable, args, analytic: Callable[[], tuple[float, float]], method: str | None = None
) -> Estimate:
    try:
        cost = xla_cost(fn, *args)
    except NotImplementedError as e:
        return Estimate(math.inf, math.inf, math.inf, f"error: {e}")
    if cost is not None:
        return Estimate(cost[0], cost[1], _seconds(*cost, method), "xla")
    flops, nbytes = analytic()
    return Estimate(flops, nbytes, _seconds(flops, nbytes, method), "analytic")


def choose(estimates: dict[str, Estimate]) -> str:
    finite = {k: v for k, v in estimates.items() if math.isfinite(v.seconds)}
    if not finite:
        raise RuntimeError(f"no NTK method could be costed: {estimates}")
    return min(finite, key=lambda k: finite[k].seconds)
