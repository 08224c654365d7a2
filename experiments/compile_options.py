"""XLA CPU compile options for the search's kernel, side by side in one run.

Lowers a space's masked-graph kernel (the program ``ntknas search`` compiles once per space and
setting: structured derivatives, 32x32, Gaussian data, batch 4, 10 logits) once, then
compiles it with XLA's default CPU options and with each candidate option set, alternating, and
times each executable on the same seeded candidates. Prints compile seconds, the median run
seconds and the largest difference between the kernels (the HLO is the same; the code generator
differs). The persistent compilation cache is off and the in-memory caches are cleared
before each compile, so every compile is a real one.

Run: ``python experiments/compile_options.py --space vit-small --repeats 2``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from block_cost import graph_candidates  # noqa: E402

from ntknas import ntk  # noqa: E402

OPTIONS = {
    "XLA defaults": {},  # not None: Lowered.compile() keeps the executable of a no-options call
    "legacy fusion (xla_cpu_use_fusion_emitters=false)": {"xla_cpu_use_fusion_emitters": False},
}


def main(argv=None) -> int:
    os.environ["NTKNAS_COMPILE_CACHE"] = "0"
    jax.config.update("jax_enable_compilation_cache", False)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="vit-small")
    ap.add_argument("--candidates", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2, help="compiles per option set")
    ap.add_argument("--runs", type=int, default=3, help="runs per candidate (median)")
    args = ap.parse_args(argv)
    f, inputs = graph_candidates(args.space, args.candidates)
    kernel_fn = ntk.ntk_fn(f, method="structured_derivatives", vmap_axes=((0, None), 0))
    inputs = [(params, xs) for xs, params in inputs]

    t0 = time.perf_counter()
    lowered = jax.jit(lambda p, xs: kernel_fn(xs, None, p)).lower(*inputs[0])
    print(f"{args.space}: lowered in {time.perf_counter() - t0:.1f} s", flush=True)
    compile_s = {name: [] for name in OPTIONS}
    run_s = {name: [] for name in OPTIONS}
    kernels = {}
    for rep in range(args.repeats):
        for name, opts in OPTIONS.items():
            jax.clear_caches()  # else a second compile of the same lowering is a memory hit
            t0 = time.perf_counter()
            exe = lowered.compile(compiler_options=opts)
            compile_s[name].append(time.perf_counter() - t0)
            jax.block_until_ready(exe(*inputs[0]))  # first run (allocations) not timed
            for i, (p, xs) in enumerate(inputs):
                times = []
                for _ in range(args.runs):
                    t0 = time.perf_counter()
                    k = jax.block_until_ready(exe(p, xs))
                    times.append(time.perf_counter() - t0)
                run_s[name].append(statistics.median(times))
                kernels.setdefault(i, {})[name] = np.asarray(k, np.float64)
            print(
                f"  [{rep + 1}/{args.repeats}] {name}: compile {compile_s[name][-1]:.1f} s, "
                f"run {statistics.median(run_s[name][-len(inputs) :]):.3f} s",
                flush=True,
            )
    base = next(iter(OPTIONS))
    print(f"\n{args.space}, {len(inputs)} candidates, {args.repeats} compiles each:")
    print("| options | compile s (median) | run s per candidate (median) | vs defaults |")
    print("|---|---|---|---|")
    for name in OPTIONS:
        c, r = statistics.median(compile_s[name]), statistics.median(run_s[name])
        ratio = (
            f"compile {statistics.median(compile_s[base]) / c:.2f}x, "
            f"run {statistics.median(run_s[base]) / r:.2f}x faster"
        )
        print(f"| {name} | {c:.1f} | {r:.3f} | {ratio if name != base else '-'} |")
    worst = max(
        float(np.max(np.abs(ks[n] - ks[base])) / np.max(np.abs(ks[base])))
        for ks in kernels.values()
        for n in ks
    )
    print(f"largest kernel difference from the defaults' (relative to max |K|): {worst:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
