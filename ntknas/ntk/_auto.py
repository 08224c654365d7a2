"""Cost model and method choice for ``method="auto"``.

Structured derivatives are lowered (not compiled) for the given shapes and XLA's HLO cost analysis
gives their FLOPs and bytes accessed. Jacobian contraction and NTK-vector products are first costed
by the paper's Table 2 with the forward pass's FLOPs measured by XLA (cheap: one forward trace);
whichever of them could come within 2x of the best so far is then lowered and costed by XLA too,
so close calls are decided by XLA's counts and hopeless ones cost no tracing. Estimated seconds =
FLOPs / peak + bytes / bandwidth, with per-backend constants. Choices are cached per (function,
axes, batching, shapes, dtypes), and the chosen method's lowering is kept so that running it does
not trace it again.
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
    source: str  # "xla", "model" (not lowered: too far behind) or "error: ..."


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


def xla_cost(lowered) -> tuple[float, float] | None:
    """(FLOPs, bytes accessed) from XLA's cost analysis of a ``jax.stages.Lowered``, or None."""
    cost = lowered.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    if not cost or "flops" not in cost:
        return None
    return float(cost["flops"]), float(cost.get("bytes accessed", 0.0))


def lower(fn: Callable, *args):
    """``jax.jit(fn)`` lowered on the abstract values of ``args`` (nothing is compiled or run)."""
    abstract = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, weak_type=getattr(a, "weak_type", False)),
        args,
    )
    return jax.jit(fn).lower(*abstract)


def model_cost(
    method: str, n1: int, n2: int, o: int, p: int, fp: float, itemsize: int
) -> tuple[float, float]:
    """The paper's Table 2 costs with [FP] measured by XLA on one example.

    A VJP of O cotangents costs one forward pass plus ~2 [FP] per cotangent; a linearized JVP
    ~2 [FP]. Jacobian contraction: N·O VJPs plus the N1·N2·O²·P contraction; NTK-vector products:
    N2·O VJPs on one example plus N2·O JVPs on the N1 batch. Structured derivatives depend on the
    model's primitives and are always costed by lowering. Bytes: the largest arrays held.
    """
    vjps = lambda n: n * (fp + 2 * o * fp)  # noqa: E731
    if method == "jacobian_contraction":
        return vjps(n1) + vjps(n2) + 2.0 * n1 * n2 * o * o * p, (n1 + n2) * o * p * itemsize
    if method == "ntk_vector_products":
        flops = n1 * fp + vjps(n2) + 2.0 * n1 * n2 * o * fp
        return flops, (n2 * o * p + n1 * n2 * o * o) * itemsize
    raise ValueError(f"no cost model for {method!r}")


def estimate_lowered(lowered, method: str) -> Estimate:
    cost = xla_cost(lowered)
    if cost is None:
        return Estimate(math.inf, math.inf, math.inf, "error: XLA gave no cost analysis")
    return Estimate(cost[0], cost[1], _seconds(*cost, method), "xla")


def estimate_model(flops: float, nbytes: float, method: str, note: str) -> Estimate:
    return Estimate(flops, nbytes, _seconds(flops, nbytes, method), note)


def choose(estimates: dict[str, Estimate]) -> str:
    finite = {k: v for k, v in estimates.items() if math.isfinite(v.seconds)}
    if not finite:
        raise RuntimeError(f"no NTK method could be costed: {estimates}")
    return min(finite, key=lambda k: finite[k].seconds)
