"""Throughput of several workers on one study: candidates per minute for 1, 2, 4, ... workers.

Each case is a fresh journal-file study on ``--space`` (random sampler, CPU defaults), run as

* ``jobs``:  one ``ntknas worker --jobs J --trials T`` (processes pinned to disjoint cores, thread
  pools sized to them), and
* ``procs``: J separate ``ntknas worker --trials T/J`` commands on the same study, as a user would
  start them by hand (no pinning: every process sees every core).

Two rates per case: end to end (wall time of the command, with process start and JAX import),
and steady (trials over the span from the first trial's start to the last one's end).
Run: ``python experiments/worker_throughput.py --space nb201 --workers 1 2 4 --trials 16``.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_case(space: str, workers: int, trials: int, mode: str, extra: list[str]) -> dict:
    from ntknas.study import load_study, open_storage

    with tempfile.TemporaryDirectory() as tmp:
        url = f"journal:{tmp}/study.log"
        base = [sys.executable, "-m", "cli", "worker", "--space", space, "--storage", url]
        base += ["--study", "bench", "--sampler", "random", "--no-progress", *extra]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        if mode == "jobs" or workers == 1:
            commands = [[*base, "--trials", str(trials), "--jobs", str(workers)]]
        else:
            shares = [trials // workers + (i < trials % workers) for i in range(workers)]
            commands = [[*base, "--trials", str(n)] for n in shares]
        t0 = time.perf_counter()
        out = subprocess.DEVNULL
        procs = [subprocess.Popen(c, cwd=ROOT, env=env, stdout=out) for c in commands]
        codes = [p.wait() for p in procs]
        wall = time.perf_counter() - t0
        if any(codes):
            raise RuntimeError(f"{mode} x{workers}: exit codes {codes}")
        done = load_study(open_storage(url, must_exist=True), "bench").trials
    finished = [t for t in done if t.datetime_complete is not None]
    span = (
        max(t.datetime_complete for t in finished) - min(t.datetime_start for t in finished)
    ).total_seconds()
    scored = sum("ntk_cond" in t.user_attrs and "reused_from" not in t.user_attrs for t in done)
    return {
        "space": space,
        "mode": mode if workers > 1 else "one",
        "workers": workers,
        "trials": len(done),
        "complete": sum(t.state.name == "COMPLETE" for t in done),
        "scored": scored,
        "wall_s": round(wall, 1),
        "per_min_end_to_end": round(60 * len(done) / wall, 1),
        "per_min_steady": round(60 * len(finished) / span, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="nb201")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--modes", nargs="+", default=["jobs", "procs"], choices=["jobs", "procs"])
    ap.add_argument("--out", default=str(ROOT / "experiments/out/worker_throughput.csv"))
    ap.add_argument("extra", nargs="*", help="more `ntknas worker` options, after --")
    args = ap.parse_args()
    rows = []
    for workers in args.workers:
        for mode in args.modes if workers > 1 else ["jobs"]:
            row = run_case(args.space, workers, args.trials, mode, args.extra)
            print(row, flush=True)
            rows.append(row)
    with open(args.out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"cores: {len(os.sched_getaffinity(0))}; wrote {args.out}")


if __name__ == "__main__":
    main()
