"""Quick timing of structured derivatives vs Jacobian contraction vs NTK-vector products.

10-layer ReLU FCN without bias, input size 3, N=8 (paper Fig. 1 / the issue's targets), float32,
jit, compile excluded, median of repeats. Also prints what ``method="auto"`` picks.

Usage: python experiments/bench_structured_quick.py [--widths 64 256 1024] [--outputs 1 16 128]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import jax
import jax.numpy as jnp

from ntknas import ntk

METHODS = ("structured_derivatives", "jacobian_contraction", "ntk_vector_products")
_JC_BYTES_LIMIT = 8e9  # J is N·O·P float32s (x2=None: one Jacobian)


def fcn(depth: int, width: int, n_out: int, d_in: int = 3, seed: int = 0):
    keys = jax.random.split(jax.random.PRNGKey(seed), depth)
    sizes = [d_in] + [width] * (depth - 1) + [n_out]
    params = [
        jax.random.normal(k, (a, b), jnp.float32) / jnp.sqrt(a)
        for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]

    def f(params, x):
        for w in params[:-1]:
            x = jax.nn.relu(x @ w)
        return x @ params[-1]

    return f, params


def time_fn(fn, *args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))  # compile
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def temp_bytes(f, method, x, params) -> float:
    """XLA's temporary-buffer size for one kernel call (compile only; nothing is allocated)."""
    kernel_fn = ntk.ntk_fn(f, method)
    compiled = jax.jit(lambda x, p: kernel_fn(x, None, p)).lower(x, params).compile()
    analysis = compiled.memory_analysis()
    return (
        float(getattr(analysis, "temp_size_in_bytes", float("nan"))) if analysis else float("nan")
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[64, 256, 1024])
    ap.add_argument("--outputs", type=int, nargs="+", default=[1, 16, 128])
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--depth", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--memory", action="store_true", help="also report XLA temp bytes (SD, JC)")
    args = ap.parse_args()
    x = jax.random.normal(jax.random.PRNGKey(1), (args.n, 3), jnp.float32)
    print(f"backend={jax.default_backend()} N={args.n} depth={args.depth}")
    print(f"{'W':>5} {'O':>4} " + " ".join(f"{m[:12]:>12}" for m in args.methods) + "  JC/SD  auto")
    for w in args.widths:
        for o in args.outputs:
            f, params = fcn(args.depth, w, o)
            p = sum(a.size for a in params)
            row = {}
            for m in args.methods:
                if m == "jacobian_contraction" and args.n * o * p * 4 > _JC_BYTES_LIMIT:
                    row[m] = float("nan")
                    continue
                row[m] = time_fn(ntk.ntk_fn(f, m), x, None, params, repeats=args.repeats)
            auto = ntk.explain(f, x, None, params).method
            mem = ""
            if args.memory:
                sd_mb = temp_bytes(f, METHODS[0], x, params) / 1e6
                jc_mb = temp_bytes(f, METHODS[1], x, params) / 1e6
                mem = f"  temp MB: SD {sd_mb:9.1f} JC {jc_mb:9.1f}"
            sd, jc = row.get(METHODS[0]), row.get(METHODS[1])
            ratio = jc / sd if sd and jc else float("nan")
            print(
                f"{w:>5} {o:>4} "
                + " ".join(f"{row[m]:12.4f}" for m in args.methods)
                + f"  {ratio:5.1f}x  {auto}{mem}",
                flush=True,
            )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"peak RSS of this process: {peak:.2f} GB")


if __name__ == "__main__":
    main()
