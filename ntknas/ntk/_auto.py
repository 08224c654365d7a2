"""Cost model and method choice for ``method="auto"``.

Structured derivatives are lowered (not compiled) for the given shapes and XLA's HLO cost analysis
gives their FLOPs and bytes accessed. Jacobian contraction and NTK-vector products are first costed
by the paper's Table 2 with the forward pass's FLOPs measured by XLA (cheap: one forward trace);
whichever of them could come within 2x of the best so far is then lowered and costed by XLA too,
so close calls are decided by XLA's counts and hopeless ones cost no tracing. Estimated seconds =
FLOPs / peak + bytes / bandwidth, with per-backend constants.

Fail-safe: methods are then tried fastest first. Each is lowered (if it was not) and compiled
with the largest blocks of output basis vectors that fit the memory budget
(:func:`._compiled.fit_kernel`). One whose compiled peak memory (``memory_analysis()``:
arguments + outputs + temporaries) exceeds the budget even so, or whose lowering or compiling
raises anything at all, is skipped with its reason, and the next is tried. The first that
compiles within budget is chosen, and its executable is handed to the caller, so nothing is
compiled twice. When that executable fails as it runs (XLA out of memory at execution, or any
other error), the caller asks :meth:`AutoChooser.fall_back` for the next method, and the
explanation records why.

:class:`AutoChooser` owns the choice: it caches each :class:`Explanation` per (function, axes,
batching, shapes, dtypes) and hands the chosen method's lowering to the caller that asked for it
(a :class:`ntknas.ntk.KernelFn` compiling), so the chosen method is not traced twice.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np

from ._batching import Batching
from ._compiled import UNBLOCKED, first_block, fit_kernel, lower
from ._compiled import peak_bytes as peak_bytes  # where ntknas.bench reads it
from ._cost import xla_cost
from ._kernel import NtkMethod, Options, check_arrays, compute, memory_budget, output_shapes

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
    peak_bytes: float | None = None  # compiled peak memory; None where not compiled
    # output basis vectors per block in the compiled program (see _compiled.fit_kernel):
    # UNBLOCKED, a number, or None (not compiled, or blocks from the estimate)
    block_size: int | None = None


@dataclass(frozen=True)
class Explanation:
    """What ``method="auto"`` chose and why (see :func:`ntknas.ntk.explain`)."""

    method: str
    estimates: dict[str, Estimate] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # method -> why it was not chosen
    budget_bytes: float = math.inf

    def __str__(self) -> str:
        lines = [f"auto -> {self.method} (memory budget {_gib(self.budget_bytes)})"]
        for name, e in sorted(self.estimates.items(), key=lambda kv: kv[1].seconds):
            peak = "not compiled" if e.peak_bytes is None else f"peak {_gib(e.peak_bytes)}"
            if e.block_size is not None and e.block_size != UNBLOCKED:
                peak += f" in blocks of {e.block_size} basis vectors"
            line = (
                f"  {name:24s} {e.flops:12.4g} FLOPs {e.bytes:12.4g} bytes "
                f"~{e.seconds:.3g} s ({e.source}), {peak}"
            )
            if name in self.skipped:
                line += f"; skipped: {self.skipped[name]}"
            lines.append(line)
        return "\n".join(lines)


def _gib(n: float) -> str:
    return "unbounded" if not math.isfinite(n) else f"{n / 2**30:.3g} GiB"


# How much faster than the generic model a method's operations run. Structured derivatives spends
# its FLOPs in dense einsums (dot_general over input patches and cotangents), where the Jacobian
# contraction spends the same FLOPs in VJPs (conv-backprop-filter etc.): on CNNs with few outputs
# both count the same FLOPs, yet structured derivatives measured 1.5x faster (CPU, 3-conv CNN,
# 32x32, O=10), and it holds no N·O·P Jacobian.
_EFFICIENCY = {"structured_derivatives": 1.15}


def _seconds(flops: float, nbytes: float, method: str | None = None) -> float:
    peak, bw = _THROUGHPUT.get(jax.default_backend(), _THROUGHPUT["cpu"])
    return (flops / peak + nbytes / bw) / _EFFICIENCY.get(method, 1.0)


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


def ranking(estimates: dict[str, Estimate]) -> list[str]:
    """The costed methods, fastest estimate first."""
    finite = {k: v for k, v in estimates.items() if math.isfinite(v.seconds)}
    return sorted(finite, key=lambda k: finite[k].seconds)


@dataclass(frozen=True)
class Choice:
    """One automatic choice: its explanation and, when this call compiled it, the executable."""

    explanation: Explanation
    compiled: Any = None  # jax.stages.Compiled of the chosen method, or None (cached choice)


class AutoChooser:
    """The automatic choice of NTK method, with a bounded cache of the choices made.

    Args:
      max_size: choices kept. Keys hold the user's ``f`` (and so its closure, e.g. a model's
        variables): keep the newest few hundred, not every architecture a long search has seen.
      lower_within: a method whose model estimate exceeds this many times the best estimate so
        far is costed by the model only, not traced; closer calls are lowered and costed by XLA.
    """

    def __init__(self, max_size: int = 256, lower_within: float = 2.0):
        self.max_size = max_size
        self.lower_within = lower_within
        self._explanations: dict[Any, Explanation] = {}

    def keys(self) -> list:
        """The cache keys, oldest first (each starts with the function)."""
        return list(self._explanations)

    def choose(self, key, f, options: Options, x1, x2, params) -> Choice:
        """The choice for these shapes (``key`` from :func:`._kernel.cache_key`, or None)."""
        if key is not None and key in self._explanations:
            return Choice(self._explanations[key])
        check_arrays(params, "params")
        check_arrays(x1, "x1")
        batching = options.batching
        out1, _ = output_shapes(f, x1, x2, params)
        lowered: dict = {}
        lower_and_cost = _Lowering(f, options, (x1, x2, params), lowered)
        estimates = {}
        sd = NtkMethod.STRUCTURED_DERIVATIVES
        estimates[sd.value] = lower_and_cost(sd)
        sizes = _sizes(f, x1, x2, params, out1, batching)
        for m in (NtkMethod.NTK_VECTOR_PRODUCTS, NtkMethod.JACOBIAN_CONTRACTION):
            flops, nbytes = model_cost(m.value, *sizes)
            est = estimate_model(flops, nbytes, m.value, "model")
            best = min((e.seconds for e in estimates.values()), default=np.inf)
            if est.seconds <= self.lower_within * best:
                est = lower_and_cost(m)
            estimates[m.value] = est
        skipped = {name: e.source for name, e in estimates.items() if e.source.startswith("error")}
        explanation, compiled = self._first_that_fits(
            estimates, lowered, lower_and_cost, memory_budget(options), skipped
        )
        self._remember(key, explanation)
        return Choice(explanation, compiled)

    def fall_back(self, key, f, options: Options, x1, x2, params, error: Exception) -> Choice:
        """The next method, after the chosen one's compiled kernel raised ``error`` when it ran.

        An out-of-memory error at execution (XLA's RESOURCE_EXHAUSTED), or any other: the failed
        method joins the skipped ones with the reason, the next in the ranking that compiles
        within the budget is chosen, and the cached explanation says so (``explain`` shows it).

        Raises:
          ValueError: no method is left (chained to ``error``).
        """
        old = self.choose(key, f, options, x1, x2, params).explanation
        skipped = dict(old.skipped)
        skipped[old.method] = f"running failed: {_describe(error)}"
        lowered: dict = {}
        try:
            explanation, compiled = self._first_that_fits(
                dict(old.estimates),
                lowered,
                _Lowering(f, options, (x1, x2, params), lowered),
                old.budget_bytes,
                skipped,
            )
        except ValueError as none_left:
            self._remember(key, dataclasses.replace(old, skipped=skipped))
            raise none_left from error
        self._remember(key, explanation)
        return Choice(explanation, compiled)

    def _remember(self, key, explanation: Explanation) -> None:
        if key is None:
            return
        self._explanations.pop(key, None)
        while len(self._explanations) >= self.max_size:
            self._explanations.pop(next(iter(self._explanations)))
        self._explanations[key] = explanation

    @staticmethod
    def _first_that_fits(estimates, lowered, lower_and_cost, budget: float, skipped: dict):
        """Compiles methods fastest first until one fits the budget; explains every skip.

        Methods already in ``skipped`` (method -> why) are not tried again.
        """
        skipped = dict(skipped)
        for name in ranking(estimates):
            if name in skipped:
                continue
            if name not in lowered:  # costed by the model only: lower it now
                est = lower_and_cost(NtkMethod(name))
                if name not in lowered:
                    estimates[name] = dataclasses.replace(estimates[name], source=est.source)
                    skipped[name] = est.source
                    continue
                estimates[name] = est
            try:
                fitted = lower_and_cost.fit(NtkMethod(name))
            except Exception as e:  # e.g. XLA out of memory while compiling
                skipped[name] = f"compiling failed: {_describe(e)}"
                continue
            compiled, peak = fitted.compiled, fitted.peak_bytes
            estimates[name] = dataclasses.replace(
                estimates[name], peak_bytes=peak, block_size=fitted.block_size
            )
            if peak is not None and peak > budget:
                skipped[name] = f"peak {_gib(peak)} exceeds the memory budget {_gib(budget)}"
                continue
            return Explanation(name, estimates, skipped, budget), compiled
        why = "; ".join(f"{k}: {v}" for k, v in skipped.items()) or "none could be costed"
        raise ValueError(f"no NTK method fits (memory budget {_gib(budget)}): {why}")


@dataclass(frozen=True)
class _Lowering:
    """Lowers one method for these arguments into ``lowered`` and costs it (never raises), and
    compiles it with the largest blocks that fit the budget (reusing that lowering).

    Methods are lowered with every basis vector at once, also where the caller fixed a block
    size: XLA's cost analysis counts a loop's body once, so blocks would hide FLOPs from the costs
    (a fixed block size is then lowered again to compile).
    """

    f: Callable
    options: Options
    args: tuple
    lowered: dict

    def __call__(self, m: NtkMethod) -> Estimate:
        options = dataclasses.replace(self.options, block_size=UNBLOCKED)
        fn = functools.partial(compute, self.f, m, options)
        try:
            self.lowered[m.value] = lower(fn, *self.args)
        except Exception as e:  # any failure of one method: the next is tried
            return Estimate(np.inf, np.inf, np.inf, f"error: {_describe(e)}")
        return estimate_lowered(self.lowered[m.value], m.value)

    def fit(self, m: NtkMethod):
        reuse = first_block(self.options) == UNBLOCKED  # the lowering is the program to compile
        lowered = self.lowered[m.value] if reuse else None
        return fit_kernel(self.f, m, self.options, self.args, lowered)


def _describe(e: Exception) -> str:
    """The error's type and first line, and its last line where it has several (a runtime error
    that wraps a traceback names the cause last)."""
    lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
    text = lines[0][:200] if lines else ""
    if len(lines) > 1:
        text += f" ... {lines[-1][:200]}"
    return f"{type(e).__name__}: {text}"


def _sizes(f, x1, x2, params, out1, batching: Batching):
    """(N1, N2, O per example, P, [FP] per example, itemsize) for the cost model."""
    p = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(params))
    itemsize = max(np.dtype(o.dtype).itemsize for o in jax.tree.leaves(out1))
    total = sum(int(np.prod(o.shape)) for o in jax.tree.leaves(out1))
    n1 = batching.batch_size(x1) if batching.batched else 1
    n2 = n1 if x2 is None or not batching.batched else batching.batch_size(x2)
    cost = xla_cost(lower(f, params, x1))  # the forward pass on the x1 batch
    fp = cost[0] / n1 if cost and cost[0] > 0 else 2.0 * p  # no XLA count: ~2 FLOPs/param
    return n1, n2, total // n1, p, fp, itemsize


# The choices explain() and ntk_fn(method="auto") share; tests swap it via _switches.switched.
CHOOSER = AutoChooser()
