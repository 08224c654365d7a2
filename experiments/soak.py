"""Soak: workers on one PostgreSQL study with random SIGKILLs and a server restart; nothing lost.

Two runs of ``ntknas worker --jobs W --trials T`` on fresh studies of one database, the same
settings each: one left alone, one under faults, injected while it runs:

* ``--kills K`` SIGKILLs, each of the worker scoring a trial picked at random among those running
  with their parameters drawn, spread over the run (after a random number of finished trials);
  the ``--jobs`` parent starts a worker in place of each;
* one restart of the server (``NTKNAS_TEST_POSTGRES_STOP`` then ``..._START``, as
  ``.ci/postgres.sh`` exports them) halfway through.

Then, per retry chain (a dead trial and its retries count once in the budget): COMPLETE, lost (a
chain that neither completed nor failed for a reason of its own; must be 0), counted twice (a
chain with two COMPLETE trials; must be 0), and candidates per minute with and without faults.

Run (after ``source .ci/postgres.sh``, which exports the URL and the stop/start commands):
``python experiments/soak.py --workers 8 --trials 200 --kills 10``.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import shlex
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ["--space", "mlp", "--batch", "2", "--input-size", "2", "--max-params", "20000"]
SETTINGS += ["--sampler", "random", "--no-progress", "--heartbeat", "1", "--grace", "3"]


def _trials(url: str, study: str):
    from ntknas.study import load_study, open_storage

    return load_study(open_storage(url), study).get_trials(deepcopy=False)


def _server(action: str) -> None:
    subprocess.run(
        shlex.split(os.environ[f"NTKNAS_TEST_POSTGRES_{action}"]), check=True, capture_output=True
    )


def run(url: str, study: str, workers: int, trials: int, kills: int, restart: bool, seed: int):
    """One run; returns (wall seconds, faults injected by kind, the worker's stderr)."""
    from ntknas.study import _heartbeat

    rng = random.Random(seed)
    argv = [sys.executable, "-m", "cli", "worker", *SETTINGS, "--storage", url, "--study", study]
    argv += ["--trials", str(trials), "--jobs", str(workers)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    kill_at = sorted(rng.sample(range(1, max(trials - 1, kills + 1)), kills)) if kills else []
    restart_at = trials // 2 if restart else None
    faults: collections.Counter = collections.Counter()
    while proc.poll() is None:
        time.sleep(0.2)
        try:
            now = _trials(url, study)
        except Exception:  # not created yet, or the server is restarting
            continue
        done = sum(t.state.is_finished() for t in now)
        if restart_at is not None and done >= restart_at:
            _server("STOP")
            _server("START")
            faults["server restart"] += 1
            restart_at = None
            continue
        running = [t for t in now if t.state.name == "RUNNING" and t.params]
        running = [t for t in running if _heartbeat.WORKER_ATTR in t.system_attrs]
        if kill_at and done >= kill_at[0] and running:
            victim = rng.choice(running)
            pid = int(victim.system_attrs[_heartbeat.WORKER_ATTR].rsplit(":", 1)[1])
            try:
                os.kill(pid, signal.SIGKILL)
                faults["SIGKILL of a worker in mid-trial"] += 1
            except ProcessLookupError:  # it finished that trial and moved on meanwhile
                continue
            kill_at.pop(0)
    err = proc.stderr.read()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{study}: exit code {proc.returncode}: {err[-2000:]}")
    return wall, faults, err


def account(trials) -> dict:
    """Per chain: complete, lost, counted twice; and failed trials by why."""
    from ntknas.study import _heartbeat

    out = collections.Counter()
    for chain in _heartbeat.chains(trials).values():
        complete = sum(t.state.name == "COMPLETE" for t in chain)
        out["COMPLETE"] += complete == 1
        out["counted twice"] += complete > 1
        own_failure = "fail_reason" in chain[-1].user_attrs and chain[-1].state.name == "FAIL"
        unclaimed = all(not t.params and _heartbeat.RUN_ATTR not in t.system_attrs for t in chain)
        out["lost"] += complete == 0 and not own_failure and not unclaimed
        out["failed by its candidate"] += complete == 0 and own_failure
        out["unfinished claims (failed, not counted)"] += unclaimed
    out["trials (retries included)"] = len(trials)
    out["dead trials failed and retried"] = sum(
        t.state.name == "FAIL" and "fail_reason" not in t.user_attrs for t in trials
    )
    out["still running or waiting"] = sum(not t.state.is_finished() for t in trials)
    return dict(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--storage", default=os.environ.get("NTKNAS_TEST_POSTGRES_URL"))
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--trials", type=int, default=200)
    p.add_argument("--kills", type=int, default=10)
    p.add_argument("--no-restart", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if not args.storage:
        p.error("--storage postgresql://... (or source .ci/postgres.sh)")
    if not args.no_restart and "NTKNAS_TEST_POSTGRES_STOP" not in os.environ:
        p.error("a restart needs NTKNAS_TEST_POSTGRES_STOP/START (.ci/postgres.sh exports them)")
    sys.path.insert(0, str(ROOT))
    tag = uuid.uuid4().hex[:8]
    rows = {}
    for name, kills, restart in (("clean", 0, False), ("faults", args.kills, not args.no_restart)):
        study = f"soak-{name}-{tag}"
        wall, faults, err = run(
            args.storage, study, args.workers, args.trials, kills, restart, args.seed
        )
        rows[name] = (wall, faults, account(_trials(args.storage, study)), err)
    print(f"{args.workers} workers, {args.trials} trials, {args.storage.split('@')[-1]}")
    for name, (wall, faults, counts, err) in rows.items():
        print(f"\n{name}: {wall:.0f} s, {60 * counts['COMPLETE'] / wall:.1f} candidates/min")
        for kind, n in sorted(faults.items()):
            print(f"  injected: {kind}: {n}")
        print(f"  workers seen dying: {err.count('ended with signal')}")
        for key, n in counts.items():
            print(f"  {key}: {n}")


if __name__ == "__main__":
    main()
