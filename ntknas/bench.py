"""The NTK engine's benchmark: every method side by side, one run, ratios printed.

Cases: the paper's Figure 1 setting (10-layer ReLU FCN without bias, input size 3, N=8,
W in {64, 256, 1024}, O in {1, 16, 128}), a small CNN (3x3 convs on 32x32 inputs, global average
pooling, O in {10, 100}) and, when search_spaces is importable, a vit-small candidate at O in
{10, 1000}. Per (case, method): compile time (``kernel_fn.compile``: blocks fitted to the memory
budget, as ``ntk_fn`` runs), median wall time of ``repeats`` runs (compile
excluded, ``block_until_ready``), and XLA's peak-memory estimate of the compiled kernel
(arguments + outputs + temporaries; on GPU also the device's peak bytes in use). Cases whose
compiled kernel would need more than ``mem_limit`` bytes are not run ("skipped: memory"), and a
case whose first run takes longer than ``timeout`` seconds is not repeated.
"""

from __future__ import annotations

import csv
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import jax
import numpy as np

from ntknas import ntk
from ntknas.bench_nets import cnn_apply, fcn_apply
from ntknas.ntk._auto import peak_bytes

METHODS = ("jacobian_contraction", "ntk_vector_products", "structured_derivatives")


@dataclass
class Case:
    name: str
    f: Callable
    params: object
    x: object
    info: dict


def fcn_case(width: int, o: int, n: int = 8, depth: int = 10, din: int = 3, seed: int = 0) -> Case:
    """The paper's Figure 1 network: depth-layer ReLU FCN, no bias."""
    keys = jax.random.split(jax.random.PRNGKey(seed), depth + 1)
    dims = [din] + [width] * (depth - 1) + [o]
    params = [
        jax.random.normal(keys[i], (dims[i], dims[i + 1])) / math.sqrt(dims[i])
        for i in range(depth)
    ]
    x = jax.random.normal(keys[-1], (n, din))
    return Case(f"fcn W={width} O={o}", fcn_apply, params, x, dict(family="fcn", W=width, O=o, N=n))


def cnn_case(
    o: int, n: int = 8, width: int = 32, depth: int = 3, size: int = 32, seed: int = 0
) -> Case:
    """3x3 SAME convs on size x size x 3 inputs, ReLU, global average pooling, dense head."""
    keys = jax.random.split(jax.random.PRNGKey(seed), depth + 2)
    chans = [3] + [width] * depth
    params = {
        "convs": [
            jax.random.normal(keys[i], (3, 3, chans[i], chans[i + 1])) / math.sqrt(9 * chans[i])
            for i in range(depth)
        ],
        "head": jax.random.normal(keys[depth], (width, o)) / math.sqrt(width),
    }
    x = jax.random.normal(keys[-1], (n, size, size, 3))
    return Case(f"cnn W={width} O={o}", cnn_apply, params, x, dict(family="cnn", W=width, O=o, N=n))


def vit_case(
    o: int, n: int = 8, seed: int = 0, config: dict | None = None, input_shape=None
) -> Case | None:
    """A vit-small candidate, or None without search_spaces.

    Args:
      o, n: logits and examples.
      config: a vit-small config (default: a small sampled one).
      input_shape: (H, W, C) (default: the space's default input).
    """
    try:
        from search_spaces import get_space
    except ImportError:
        return None
    space = get_space("vit-small")
    config = _smallest_config(space) if config is None else space.validate(config)
    input_shape = tuple(input_shape or space.default_input_shape)
    model = space.build(config, num_classes=o, input_shape=input_shape)
    x = jax.random.normal(jax.random.PRNGKey(seed + 1), (n, *input_shape))
    variables = model.init(jax.random.PRNGKey(seed), x)
    rest = {k: v for k, v in variables.items() if k != "params"}

    def f(p, x):
        return model.apply({"params": p, **rest}, x)

    params = variables["params"]
    n_params = sum(a.size for a in jax.tree.leaves(params))
    return Case(
        f"vit-small O={o} N={n}",
        f,
        params,
        x,
        dict(family="vit", W=n_params, O=o, N=n, config=config),
    )


def _smallest_config(space):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    configs = []
    for seed in range(64):
        trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)).ask()
        configs.append(space.validate(space.suggest(trial)))
    return min(configs, key=lambda c: sorted(c.items()).__repr__())


def _peak_bytes(compiled) -> float:
    peak = peak_bytes(compiled)
    return math.nan if peak is None else peak


def measure(case: Case, method: str, repeats: int, timeout: float, mem_limit: float) -> dict:
    row = dict(
        case=case.name, method=method, **{k: v for k, v in case.info.items() if k != "config"}
    )
    kernel_fn = ntk.ntk_fn(case.f, method=method)
    t0 = time.perf_counter()
    try:
        # the kernel as ntk_fn runs it: output-basis blocks fitted to the memory budget by the
        # compiled program's memory_analysis (a caller's jit would take the estimate's blocks)
        compiled = kernel_fn.compile(case.x, None, case.params)
    except Exception as e:  # unsupported, or out of memory while compiling: report, go on
        return {**row, "status": f"unavailable: {type(e).__name__}: {str(e)[:120]}"}
    row["compile_s"] = time.perf_counter() - t0
    row["peak_bytes"] = _peak_bytes(compiled)
    row["flops"] = kernel_fn.flops(case.x, None, case.params)  # every block counted
    if row["peak_bytes"] > mem_limit:
        return {**row, "status": "skipped: memory"}
    times = []
    for _ in range(repeats + 1):  # the first run warms up and is not kept (unless too slow)
        t = time.perf_counter()
        jax.block_until_ready(compiled(case.x, None, case.params))
        times.append(time.perf_counter() - t)
        if times[0] > timeout:
            break
    kept = times[1:] or times
    row["seconds"] = statistics.median(kept)
    row["tflops_per_s"] = row["flops"] / row["seconds"] / 1e12
    row["status"] = "ok" if len(times) > 1 else "slow: 1 run"
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        row["device_peak_bytes"] = stats["peak_bytes_in_use"]
    return row


def cases(quick: bool, match: str | None = None) -> list[Case]:
    """The grid (``quick``: a one-minute subset); ``match``: only cases whose name contains it."""
    found = _grid(quick)
    if match is None:
        return found
    chosen = [c for c in found if match in c.name]
    if not chosen:
        names = ", ".join(c.name for c in found)
        raise ValueError(f"no benchmark case matches {match!r}; the cases are: {names}")
    return chosen


def _grid(quick: bool) -> list[Case]:
    widths, outs = ((64, 256), (1, 16)) if quick else ((64, 256, 1024), (1, 16, 128))
    out = [fcn_case(w, o) for w in widths for o in outs]
    out += [cnn_case(o) for o in ((10,) if quick else (10, 100))]
    if not quick:
        # O=1000 at N=1: the per-example cotangents of every method are O times larger, and at N=8
        # none of the three fits in 8 GB (XLA's estimate for structured derivatives: 49 GB).
        out += [c for c in (vit_case(10), vit_case(1000, n=1)) if c is not None]
    return out


def run(
    quick=False,
    repeats=3,
    timeout=60.0,
    mem_limit=8e9,
    methods=METHODS,
    progress=print,
    match=None,
):
    rows = []
    for case in cases(quick, match):
        choice = ntk.explain(case.f, case.x, None, case.params).method
        case_rows = []
        for method in methods:
            r = measure(case, method, repeats, timeout, mem_limit)
            r["auto_pick"] = choice
            case_rows.append(r)
            progress(_fmt(r))
        timed = [r for r in case_rows if "seconds" in r]
        best = min((r["seconds"] for r in timed), default=math.nan)
        jc = next((r["seconds"] for r in timed if r["method"] == "jacobian_contraction"), math.nan)
        picked = next(
            (r.get("seconds", math.inf) for r in case_rows if r["method"] == choice), math.nan
        )
        for r in case_rows:
            r["speedup_vs_jc"] = jc / r["seconds"] if "seconds" in r else math.nan
            r["auto_slowdown"] = picked / best
        rows.extend(case_rows)
    return rows


def _fmt(r: dict) -> str:
    s = f"{r['case']:22s} {r['method']:24s}"
    if "seconds" in r:
        return s + f" {r['seconds']:9.4f} s  {r['peak_bytes'] / 1e9:7.3f} GB  ({r['status']})"
    return s + f" {r['status']}"


def write_csv(rows: list[dict], path: str) -> None:
    keys = sorted({k for r in rows for k in r})
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, keys)
        w.writeheader()
        w.writerows(rows)


def table(rows: list[dict]) -> str:
    """A plain-text table: one line per case, methods side by side, ratios vs Jacobian."""
    by_case: dict[str, dict[str, dict]] = {}
    for r in rows:
        by_case.setdefault(r["case"], {})[r["method"]] = r
    methods = [m for m in METHODS if any(m in v for v in by_case.values())]
    short = {
        "jacobian_contraction": "JC",
        "ntk_vector_products": "NTK-VP",
        "structured_derivatives": "SD",
    }
    head = f"{'case':22s}" + "".join(
        f"{short[m] + ' s':>12s}{short[m] + ' GB':>11s}" for m in methods
    )
    head += f"{'VP/JC':>8s}{'SD/JC':>8s}  auto pick (x slower than best)"
    lines = [head]
    for name, per in by_case.items():
        line = f"{name:22s}"
        for m in methods:
            r = per.get(m, {})
            status = r.get("status", "-")
            sec = (
                f"{r['seconds']:.4f}"
                if "seconds" in r
                else {"skipped: memory": "> mem"}.get(status, status[:10])
            )
            mem = f"{r['peak_bytes'] / 1e9:.3f}" if "peak_bytes" in r else "-"
            line += f"{sec:>12s}{mem:>11s}"
        for m in ("ntk_vector_products", "structured_derivatives"):
            sp = per.get(m, {}).get("speedup_vs_jc", math.nan)
            line += f"{sp:7.1f}x" if np.isfinite(sp) else f"{'-':>8s}"
        r0 = next(iter(per.values()))
        slow = r0["auto_slowdown"]
        slow = f"{slow:.2f}x" if np.isfinite(slow) else "not run"
        line += f"  {short.get(r0['auto_pick'], r0['auto_pick'])} ({slow})"
        lines.append(line)
    return "\n".join(lines)


def main(quick=False, out=None, repeats=3, timeout=60.0, mem_limit=8e9, match=None) -> list[dict]:
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind} ({jax.default_backend()})")
    rows = run(quick=quick, repeats=repeats, timeout=timeout, mem_limit=mem_limit, match=match)
    print()
    print(table(rows))
    bad = [r for r in rows if r["method"] == r["auto_pick"] and r["auto_slowdown"] > 1.2]
    for r in bad:
        print(
            f"auto picked {r['method']} on {r['case']}: "
            f"{r['auto_slowdown']:.2f}x slower than the best"
        )
    if out:
        write_csv(rows, out)
        print(f"wrote {out}")
    return rows
