"""Benchmark every NTK method side by side (see ntknas/bench.py for the cases and what is measured).

python experiments/bench_ntk.py            # full grid, writes experiments/out/bench_ntk.csv
python experiments/bench_ntk.py --quick    # a one-minute subset
python experiments/bench_ntk.py --match cnn  # only the cases whose name contains "cnn"
"""

import argparse
import os

from ntknas import bench

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--match", default=None, help="only the cases whose name contains this")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--mem-limit-gb", type=float, default=8.0)
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "out", "bench_ntk.csv"))
    a = p.parse_args()
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    bench.main(
        quick=a.quick,
        out=a.out,
        repeats=a.repeats,
        timeout=a.timeout,
        mem_limit=a.mem_limit_gb * 1e9,
        match=a.match,
    )
