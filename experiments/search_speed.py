"""Search speed, the per-architecture path against the shared graph, side by side in one run.

For each space, ``--candidates`` seeded random configs (Optuna's random sampler, as ``ntknas
search --sampler random``) are scored three times, each run in a new process with its own empty
persistent compilation cache (so no run profits from another's compiles): through their own
networks (``own``: a compile per new architecture), through the space's shared graph
(``shared``: one compile for the space, then init and kernel per candidate), and as searches score
them (``auto``: the path rule of :class:`ntknas.scoring.Scorer` picks per candidate; ``path``
lists the paths it took). All three draw the same initial values, so their scores agree, and all
compute what a search with the space's default objective computes (the kernel per parameter block
where that objective names a per-block proxy). Printed
per run: candidates per minute (all of it, first compile included, and the
steady state after the first candidate), median seconds per candidate split into compile, init and
kernel, and the kernel's share of the matmul FLOP floor: the candidate's own kernel FLOPs at the
measured float32 matmul rate, over its seconds (1.0 would be a machine doing nothing but that
kernel's matmuls). Also the shared graph's kernel FLOPs over the candidates' own ones (what
computing at the largest shape costs), and a second process: the same candidates scored as a
search would (``auto``) by a new process joining the cache the ``auto`` run filled (its hits, and
its first candidate's compile seconds).

Generic over spaces: a space without a shared graph (for this setting) shows ``path=own`` twice.
Run: ``python experiments/search_speed.py --spaces mlp resnet --candidates 6``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

PATH_FIELDS = ("seconds", "compile_seconds", "init_seconds", "kernel_seconds", "ntk_flops")


def matmul_flops_per_second(n: int = 2048, repeats: int = 5) -> float:
    """The float32 matmul rate of this machine: the best of ``repeats`` n×n matmuls."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    mm = jax.jit(lambda a: a @ a)
    mm(a).block_until_ready()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        mm(a).block_until_ready()
        times.append(time.perf_counter() - t)
    return 2 * n**3 / min(times)


def candidates(space, n: int, seed: int) -> list[dict]:
    """``n`` distinct configs drawn by Optuna's random sampler with ``seed``."""
    import optuna

    from ntknas.scoring import canonical_json

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    seen: dict[str, dict] = {}
    for _ in range(50 * n):
        if len(seen) == n:
            break
        trial = study.ask()
        config = space.validate(space.suggest(trial))
        seen.setdefault(canonical_json(config), config)
        study.tell(trial, 0.0)
    return list(seen.values())


RUNS = ("own", "shared", "auto")


def score_path(space, configs, options, run: str) -> dict:
    """Scores ``configs`` with a fresh scorer for ``run`` (one of :data:`RUNS`); per-candidate
    rows and the wall time."""
    import math

    from ntknas import proxies
    from ntknas.scoring import Scorer

    bound = math.inf if run == "shared" else None  # None: the space's own rule
    scorer = Scorer(shared_graphs=run != "own", shared_flops_max=bound)
    # what a search with the space's default objective computes (per-block kernels if it reads one)
    blocks = proxies.needs_blocks(proxies.parse_terms(space.default_objective)[0])
    rows = []
    t0 = time.perf_counter()
    for config in configs:
        s = scorer.score(space, config, options, blocks=blocks)
        row = {"path": s.path, **{k: getattr(s, k) for k in PATH_FIELDS}}
        rows.append(row | {"ntk_trace": s["ntk_trace"], "ntk_cond": s["ntk_cond"]})
    return {"rows": rows, "wall": time.perf_counter() - t0}


def summary(result: dict, own_flops: list[float], rate: float) -> dict:
    rows, wall = result["rows"], result["wall"]
    steady = rows[1:] or rows
    med = {k: statistics.median(r[k] for r in steady) for k in PATH_FIELDS[:4]}
    floor = [f / rate / r["seconds"] for f, r in zip(own_flops, rows, strict=True) if f]
    return {
        "path": "/".join(sorted({r["path"] for r in rows})),
        "candidates": len(rows),
        "per_min": 60 * len(rows) / wall,
        "steady_per_min": 60 / med["seconds"],
        "first_s": rows[0]["seconds"],
        "first_compile_s": rows[0]["compile_seconds"],
        "s": med["seconds"],
        "compile_s": med["compile_seconds"],
        "init_s": med["init_seconds"],
        "kernel_s": med["kernel_seconds"],
        "floor_share": statistics.median(floor[1:] or floor) if floor else float("nan"),
    }


def _line(d: dict) -> str:
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in d.items())


def measure(space_name: str, n: int, args, rate: float) -> dict:
    from search_spaces import get_space

    configs = candidates(get_space(space_name), n, args.seed)
    with contextlib.ExitStack() as stack:  # the runs' caches are removed afterwards
        caches = {
            run: stack.enter_context(tempfile.TemporaryDirectory(prefix=f"ntknas-speed-{run}-"))
            for run in RUNS
        }
        results = {run: run_process(space_name, configs, args, run, caches[run]) for run in RUNS}
        results["second"] = run_process(space_name, configs, args, "auto", caches["auto"])
    own_flops = [r["ntk_flops"] or 0.0 for r in results["own"]["rows"]]
    shared_rows = results["shared"]["rows"]
    ratios = [s["ntk_flops"] / o for s, o in zip(shared_rows, own_flops, strict=True) if o and s]
    return {
        "configs": configs,
        **{run: summary(results[run], own_flops, rate) for run in RUNS},
        "agreement": {  # the largest relative difference from the own path's scores
            f"{run}_{proxy}": max(
                abs(r[proxy] - o[proxy]) / abs(o[proxy])
                for r, o in zip(results[run]["rows"], results["own"]["rows"], strict=True)
            )
            for run in RUNS[1:]
            for proxy in ("ntk_trace", "ntk_cond")
        },
        "flop_overhead": {
            "median": statistics.median(ratios) if ratios else float("nan"),
            "min": min(ratios, default=float("nan")),
            "max": max(ratios, default=float("nan")),
        },
        "second": results["second"],
    }


def run_process(space_name: str, configs, args, run: str, cache_dir: str) -> dict:
    """One run in a new process whose persistent compilation cache is ``cache_dir``."""
    cmd = [sys.executable, __file__, "--run", run, space_name, json.dumps(configs)]
    cmd += ["--batch", str(args.batch), "--method", args.method]
    env = {**os.environ, "NTKNAS_COMPILE_CACHE": cache_dir}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"the {run} run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _run_main(run: str, space_name: str, configs_json: str, options) -> None:
    from ntknas.scoring import cache_stats, enable_compile_cache
    from search_spaces import get_space

    enable_compile_cache()
    result = score_path(get_space(space_name), json.loads(configs_json), options, run)
    stats = cache_stats()
    result["cache"] = {"requests": stats.requests, "hits": stats.hits, "writes": stats.writes}
    result["cache"]["saved_s"] = stats.seconds_saved
    print(json.dumps(result))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spaces", nargs="+", default=["mlp", "resnet"])
    p.add_argument("--candidates", type=int, default=6)
    p.add_argument("--seed", type=int, default=0, help="seeds the sampler (default 0)")
    p.add_argument("--batch", type=int, default=None, help="default: ntknas.scoring.DEFAULT_BATCH")
    p.add_argument("--method", default="auto", help="NTK method (default auto)")
    p.add_argument("--run", nargs=3, metavar=("RUN", "SPACE", "CONFIGS"), help=argparse.SUPPRESS)
    args = p.parse_args()
    from ntknas.scoring import DEFAULT_BATCH, ScoreOptions

    args.batch = args.batch or DEFAULT_BATCH
    if args.run:
        _run_main(*args.run, ScoreOptions(batch=args.batch, method=args.method))
        return
    rate = matmul_flops_per_second()
    print(f"float32 2048x2048 matmul: {rate / 1e9:.1f} GFLOP/s; load {os.getloadavg()[0]:.2f}")
    for name in args.spaces:
        m = measure(name, args.candidates, args, rate)
        print(f"{name} batch={args.batch} candidates={len(m['configs'])} seed={args.seed}")
        for run in RUNS:
            print(f"  {run}: " + _line(m[run]))
        print("  shared kernel FLOPs / own: " + _line(m["flop_overhead"]))
        print("  max relative difference from own: " + _line(m["agreement"]))
        second = m["second"]
        first = second["rows"][0]
        print(
            f"  second process (auto, joining the auto run's cache): path={first['path']} "
            f"first_compile_s={first['compile_seconds']:.3g} first_s={first['seconds']:.3g} "
            f"per_min={60 * len(second['rows']) / second['wall']:.3g} " + _line(second["cache"])
        )
        print(f"  load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
