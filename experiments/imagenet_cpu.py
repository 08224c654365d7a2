"""ViT-S/16 at 224x224 with 1,000 logits on this CPU: the exact kernel within a memory budget,
and the matrix-free spectrum, side by side in one run.

Issue 13's CPU target: vit-small at the ViT-S/16 shape (embed 384, depth 12, 6 heads, MLP ratio
4, patch 16, 224x224, O = 1000). For each N (default 1 and 4):

- the exact (N, N, O, O) kernel by ``method`` (default auto) under ``--budget`` bytes (the
  output basis walked in blocks fitted to the budget by XLA's ``memory_analysis()``): compile
  seconds, run seconds, XLA's compiled peak, XLA's FLOP count;
- for each N of ``--matrix-free``: ``ntknas.proxies.operator_proxies`` on the NTK-vector-product
  operator (never forming the kernel): seconds (its compile included), and its condition number
  and trace against the exact kernel's where that N was run exactly.

The process's peak resident memory (``ru_maxrss``) is printed after each step; it includes
JAX's and Python's own memory and every earlier step.

Run: ``python experiments/imagenet_cpu.py --n 1 4 --matrix-free 4`` (``--n 1 --matrix-free 4``
skips the exact kernel at N=4).
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from ntknas import bench, ntk, proxies  # noqa: E402

VIT_S16 = {
    "embed_dim": 384,
    "depth": 12,
    "heads": [6] * 12,
    "mlp_ratio": [4.0] * 12,
    "patch_size": 16,
}


def rss_gb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def _exact(case, name: str, args) -> dict:
    """The exact kernel of ``case`` under the budget: prints its costs; returns its proxies and
    ``seconds`` (compile + run)."""
    kernel_fn = ntk.ntk_fn(case.f, method=args.method, memory_budget=args.budget)
    t0 = time.perf_counter()
    exe = kernel_fn.compile(case.x, None, case.params)
    compile_s = time.perf_counter() - t0
    peak, flops = bench._peak_bytes(exe), kernel_fn.flops(case.x, None, case.params)
    method = args.method
    if method == "auto":
        method = ntk.explain(case.f, case.x, None, case.params, memory_budget=args.budget).method
    t0 = time.perf_counter()
    kernel = np.asarray(jax.block_until_ready(exe(case.x, None, case.params)), np.float64)
    run_s = time.perf_counter() - t0
    print(
        f"{name}: exact kernel by {method}: compile {compile_s:.1f} s, run {run_s:.1f} s, "
        f"XLA peak {peak / 1e9:.2f} GB, {flops / 1e12:.2f} TFLOP "
        f"({flops / run_s / 1e9:.0f} GFLOP/s); process peak RSS {rss_gb():.2f} GB",
        flush=True,
    )
    return {**proxies.kernel_proxies(kernel, case.info["W"]), "seconds": compile_s + run_s}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="*", default=[1, 4], help="N of the exact kernels")
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--method", default="auto")
    ap.add_argument("--budget", type=float, default=8e9, help="bytes (default 8e9)")
    ap.add_argument("--matrix-free", type=int, nargs="*", default=[4], help="N values")
    args = ap.parse_args(argv)
    print(f"jax {jax.__version__}, {jax.devices()[0].device_kind}, budget {args.budget / 1e9} GB")
    exact_seconds = {}
    for n in sorted(set(args.n) | set(args.matrix_free)):
        case = bench.vit_case(
            args.classes, n=n, config=VIT_S16, input_shape=(args.size, args.size, 3)
        )
        name = f"ViT-S/16 {args.size} N={n} O={args.classes} ({case.info['W'] / 1e6:.1f}M params)"
        exact = None
        if n in args.n:
            exact = _exact(case, name, args)
            exact_seconds[n] = exact.pop("seconds")
        if n not in args.matrix_free:
            continue
        t0 = time.perf_counter()
        op = proxies.kernel_operator(case.f, case.x, case.params)
        approx, source = proxies.operator_proxies(op, case.info["W"])
        mf_s = time.perf_counter() - t0
        against = [f"{mf_s / v:.2f}x the exact kernel's at N={k}" for k, v in exact_seconds.items()]
        print(
            f"{name}: matrix-free ({source}): {mf_s:.1f} s with its compile "
            f"({'; '.join(against) or 'no exact kernel run'}); process peak RSS "
            f"{rss_gb():.2f} GB",
            flush=True,
        )
        for key in ("ntk_cond", "ntk_trace", "ntk_eig_max", "ntk_eig_min", "ntk_eff_rank"):
            a = approx[key]
            if exact is None:
                print(f"    {key}: matrix-free {a:.6g}")
                continue
            e = exact[key]
            rel = abs(a - e) / abs(e) if e and math.isfinite(e) else math.nan
            print(f"    {key}: matrix-free {a:.6g}, exact {e:.6g}, relative error {rel:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
