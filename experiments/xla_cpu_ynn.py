"""YNNPACK convolutions on XLA's CPU backend: faster, and not safe (why ntknas does not use them).

jaxlib 0.10's XLA hands convolutions to YNNPACK under the experimental flag
``--xla_cpu_experimental_ynn_fusion_type=dot`` (XLA_FLAGS, or per compilation as
``compiler_options={"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_DOT"}``). This
script runs, each in a fresh process, with and without that flag, alternating:

1. speed: every NTK method on the bench's CNN cases (``ntknas.bench``: compile excluded, median
   of ``--repeats``, XLA's compiled peak), ``--rounds`` processes per setting;
2. safety: ``ntknas.score`` of three NAS-Bench-201 cells (the network shrunk to 4-16 channels,
   8x8 inputs, batch 2, 3 classes, BatchNorm in train mode) by every method, ``--runs``
   processes per setting: how many kernels came out non-finite.

    python experiments/xla_cpu_ynn.py                 # about 6 minutes on 2 cores
    python experiments/xla_cpu_ynn.py --runs 8 --rounds 0
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections import Counter

FLAG = "--xla_cpu_experimental_ynn_fusion_type=dot"
METHODS = ("jacobian_contraction", "ntk_vector_products", "structured_derivatives")
CELLS = ("111111", "013241", "230410")  # all "none"; skip/none/convs/avg; convs/avg/skip


def _speed(repeats: int) -> dict:
    from ntknas import bench

    out = {}
    for case in [*bench.cases(False, "cnn"), bench.cnn_case(10, width=64)]:
        for m in METHODS:
            r = bench.measure(case, m, repeats, timeout=120.0, mem_limit=8e9)
            out[f"{case.name}|{m}"] = [r.get("seconds"), r.get("peak_bytes")]
    return out


def _safety() -> dict:
    import ntknas
    from search_spaces import nb201

    nb201.STAGE_CHANNELS, nb201.CELLS_PER_STAGE = (4, 8, 16), 1
    out = {}
    for m in METHODS:
        for cell in CELLS:
            opts = dict(input_shape=(8, 8, 3), batch=2, num_classes=3, method=m, bn="train")
            try:
                ntknas.score("nb201", {"cell": cell}, **opts)
                out[f"{m}|{cell}"] = "finite"
            except Exception as e:  # the scorer refuses a non-finite kernel
                out[f"{m}|{cell}"] = "non-finite" if "non-finite" in str(e) else type(e).__name__
    return out


def _child(task: str, flag: bool, repeats: int) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + (" " + FLAG if flag else "")).strip()
    cmd = [sys.executable, __file__, "--child", task, "--repeats", str(repeats)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=4, help="safety processes per setting")
    p.add_argument("--rounds", type=int, default=2, help="speed processes per setting")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--child", choices=("speed", "safety"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
        print(json.dumps(_speed(a.repeats) if a.child == "speed" else _safety()))
        return
    speed = {False: [], True: []}
    for _ in range(a.rounds):
        for flag in (False, True):
            speed[flag].append(_child("speed", flag, a.repeats))
    if a.rounds:
        print("| case | method | without s | with s | without/with | without GB | with GB |")
        print("|---|---|---|---|---|---|---|")
        for key in speed[False][0]:
            sec = {f: [r[key][0] for r in speed[f] if r[key][0] is not None] for f in speed}
            gb = {f: (speed[f][0][key][1] or 0) / 1e9 for f in speed}
            if not sec[False] or not sec[True]:
                print(f"| {key.replace('|', ' | ')} | not run |||||")
                continue
            off, on = statistics.median(sec[False]), statistics.median(sec[True])
            print(
                f"| {key.replace('|', ' | ')} | {off:.4f} | {on:.4f} | {off / on:.2f} "
                f"| {gb[False]:.3f} | {gb[True]:.3f} |",
                flush=True,
            )
    counts = {False: Counter(), True: Counter()}
    for _ in range(a.runs):
        for flag in (False, True):
            for key, status in _child("safety", flag, a.repeats).items():
                counts[flag][key] += status == "non-finite"
                if status not in ("finite", "non-finite"):
                    print(f"{key} {'with' if flag else 'without'} the flag: {status}")
    if a.runs:
        print(f"\nnon-finite kernels in {a.runs} processes each (method | cell: without, with):")
        for key in counts[False]:
            print(f"  {key.replace('|', ' | ')}: {counts[False][key]}, {counts[True][key]}")


if __name__ == "__main__":
    main()
