"""Search speed at the CPU defaults: seconds per candidate, candidates per minute, FLOP rate.

For each space, a random search of ``--trials`` candidates is timed end to end (every candidate is
a new architecture, so each pays its compile), then the same candidates are scored again with a
new seed, which reuses the compiled kernels ("after compile"). The FLOPs of one candidate's NTK
come from XLA's cost analysis of the method auto chose; the machine's matmul rate is timed on a
float32 4096² matmul. Run: ``python experiments/search_speed.py --spaces vit-small nb201``.
"""

from __future__ import annotations

import argparse
import statistics
import time


def matmul_flops_per_second(n: int = 4096, repeats: int = 5) -> float:
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


def measure(space_name: str, trials: int, batch: int, method: str = "auto") -> dict:
    import ntknas
    from ntknas.scoring import ScoreOptions, Scorer
    from search_spaces import get_space

    space = get_space(space_name)
    t0 = time.perf_counter()
    study = ntknas.search(
        space, trials, sampler="random", storage="memory", batch=batch, method=method
    )
    wall = time.perf_counter() - t0
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    scorer = Scorer()
    configs = [space.validate(_config(t)) for t in done]
    for c in configs:  # compile once per candidate ...
        scorer.score(space, c, ScoreOptions(batch=batch, seed=0, method=method))
    rerun, rates = [], []
    for c, t in zip(configs, done, strict=True):  # ... then time a new seed on the compiled kernel
        r = scorer.score(space, c, ScoreOptions(batch=batch, seed=1, method=method))
        rerun.append(r.seconds)
        rates.append(t.user_attrs["ntk_flops"] / r.seconds)
    return {
        "space": space_name,
        "batch": batch,
        "trials": len(done),
        "s_per_candidate": wall / max(len(study.trials), 1),
        "candidates_per_min": 60 * len(study.trials) / wall,
        "compile_s_median": statistics.median(t.user_attrs["compile_seconds"] for t in done),
        "init_s_median": statistics.median(t.user_attrs["init_seconds"] for t in done),
        "kernel_s_median": statistics.median(t.user_attrs["kernel_seconds"] for t in done),
        "after_compile_s_median": statistics.median(rerun),
        "after_compile_per_min": 60 / statistics.median(rerun),
        "ntk_gflops_median": statistics.median(t.user_attrs["ntk_flops"] for t in done) / 1e9,
        "gflop_per_s_median": statistics.median(rates) / 1e9,
        "method": method,
        "chosen": sorted({t.user_attrs["method"] for t in done}),
    }


def _config(trial) -> dict:
    import json

    return json.loads(trial.user_attrs["config"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spaces", nargs="+", default=["vit-small", "nb201"])
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--batch", type=int, default=None, help="default: ntknas.scoring.DEFAULT_BATCH")
    p.add_argument(
        "--method", default="auto", help="NTK method (default auto, chosen per candidate)"
    )
    args = p.parse_args()
    from ntknas.scoring import DEFAULT_BATCH

    peak = matmul_flops_per_second()
    print(f"float32 4096x4096 matmul: {peak / 1e9:.1f} GFLOP/s")
    for name in args.spaces:
        m = measure(name, args.trials, args.batch or DEFAULT_BATCH, args.method)
        m["fraction_of_matmul"] = m["gflop_per_s_median"] * 1e9 / peak
        print(
            " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in m.items())
        )


if __name__ == "__main__":
    main()
