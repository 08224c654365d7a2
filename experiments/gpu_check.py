"""One command that measures the engine on a GPU: ``python experiments/gpu_check.py``.

Prints, per case and method, compile time, median run time, XLA's compiled peak memory (and the
device's peak bytes in use on GPU), XLA's FLOP count and the achieved TFLOP/s, plus auto's pick:
- the paper's FCN grid (10-layer ReLU FCN, N=8, W in {64, 256, 1024}, O in {1, 16, 128});
- ViT-S/16 at 224x224 (vit-small: embed 384, 12 layers, 6 heads, MLP ratio 4) with N=4, O=10
  and with N=1 and N=4 at O=1000.
Sized to finish in under 8 minutes on one H200. ``--quick`` runs tiny sizes (ViT-S at 32x32,
patch 16; a two-width FCN grid) as a CPU smoke test. ``--csv PATH`` writes the rows.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax

from ntknas import bench, ntk
from ntknas.ntk._kernel import Options, memory_budget

VIT_S16 = {"embed_dim": 384, "depth": 12, "heads": [6] * 12, "mlp_ratio": [4.0] * 12}
VIT_S16 = {**VIT_S16, "patch_size": 16}


def cases(quick: bool) -> list[bench.Case]:
    widths, outs = ((64, 256), (1, 16)) if quick else ((64, 256, 1024), (1, 16, 128))
    out = [bench.fcn_case(w, o) for w in widths for o in outs]
    size = 32 if quick else 224
    vits = ((2, 10), (1, 32)) if quick else ((4, 10), (1, 1000), (4, 1000))
    for n, o in vits:
        case = bench.vit_case(o, n=n, config=VIT_S16, input_shape=(size, size, 3))
        if case is None:
            sys.exit("gpu_check needs search_spaces (run from the repository root)")
        case.name = f"vit-s/16 {size} N={n} O={o}"
        out.append(case)
    return out


def _row(r: dict) -> str:
    if "seconds" not in r:
        return f"{r['case']:26s} {r['method']:24s} {r['status']}"
    device = r.get("device_peak_bytes")
    device = f" dev {device / 1e9:7.2f} GB" if device else ""
    return (
        f"{r['case']:26s} {r['method']:24s} compile {r['compile_s']:6.2f} s  "
        f"run {r['seconds']:9.4f} s  peak {r['peak_bytes'] / 1e9:7.2f} GB{device}  "
        f"{r['flops'] / 1e9:10.2f} GFLOP  {r['tflops_per_s']:8.4f} TFLOP/s"
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a CPU smoke test")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds before no repeats")
    ap.add_argument("--csv", help="write the rows to this CSV file")
    args = ap.parse_args(argv)
    devices = jax.devices()
    print(f"jax {jax.__version__} on {len(devices)}x {devices[0].device_kind}")
    budget = memory_budget(Options())  # auto's default budget
    start, rows = time.perf_counter(), []
    for case in cases(args.quick):
        try:
            pick = ntk.explain(case.f, case.x, None, case.params).method
        except ValueError as e:  # no method fits the budget
            pick = f"none ({e})"
        print(f"-- {case.name}: auto -> {pick}", flush=True)
        for method in bench.METHODS:
            r = bench.measure(case, method, args.repeats, args.timeout, budget)
            r["auto_pick"] = pick
            rows.append(r)
            print(_row(r), flush=True)
    print(f"total {time.perf_counter() - start:.1f} s; memory budget {budget / 1e9:.1f} GB")
    if args.csv:
        bench.write_csv(rows, args.csv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
