"""XLA's cost analysis of a lowered program, read one way by every caller in the engine."""

from __future__ import annotations


def xla_cost(lowered) -> tuple[float, float] | None:
    """(FLOPs, bytes accessed) from XLA's cost analysis of a ``jax.stages.Lowered``, or None."""
    cost = lowered.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    if not cost or "flops" not in cost:
        return None
    return float(cost["flops"]), float(cost.get("bytes accessed", 0.0))
