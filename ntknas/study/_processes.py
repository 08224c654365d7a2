"""``--jobs J``: J worker processes on this machine, each with its own JAX runtime.

Each process gets a share of the machine before it imports JAX: one accelerator each where there
are several (``CUDA_VISIBLE_DEVICES``), and on CPU a disjoint set of cores (its affinity, which
sizes XLA's and OpenBLAS's thread pools) so J workers on C cores do not oversubscribe them.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys

from . import _heartbeat, _storage
from ._budget import out_of_budget
from ._job import Job, open_study, run_worker
from ._ui import Progress, StopOnSigint, Terminated


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where one worker runs: environment variables to set, CPU cores to pin (None: all)."""

    env: dict[str, str]
    cpus: tuple[int, ...] | None


def visible_gpus() -> list[str]:
    """Ids of the NVIDIA GPUs this process may use (none under ``JAX_PLATFORMS=cpu``)."""
    platforms = os.environ.get("JAX_PLATFORMS", "")
    if platforms and "cuda" not in platforms and "gpu" not in platforms:
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(s for s in out.splitlines() if s.startswith("GPU"))]


def plan(jobs: int, gpus: list[str] | None = None, cores: list[int] | None = None):
    """One :class:`Placement` per worker.

    Args:
      jobs: number of workers.
      gpus: accelerator ids (default: :func:`visible_gpus`). Worker i gets ``gpus[i % G]``;
        when workers share a device they allocate memory as they go instead of 75% up front.
      cores: CPU cores (default: this process's affinity), split into ``jobs`` disjoint groups
        (one core each, round robin, when there are more workers than cores).
    """
    gpus = visible_gpus() if gpus is None else gpus
    cores = sorted(os.sched_getaffinity(0)) if cores is None else list(cores)
    if jobs <= len(cores):
        size, extra = divmod(len(cores), jobs)
        groups, at = [], 0
        for i in range(jobs):
            n = size + (i < extra)
            groups.append(tuple(cores[at : at + n]))
            at += n
    else:
        groups = [(cores[i % len(cores)],) for i in range(jobs)]
    placements = []
    for i, group in enumerate(groups):
        threads = str(len(group))
        env = {k: threads for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[i % len(gpus)]
            if jobs > len(gpus):
                env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
        placements.append(Placement(env, group))
    return placements


def run_processes(job: Job, jobs: int, study, store, *, progress=False, console=None) -> list[int]:
    """Runs ``job`` in ``jobs`` processes and waits for them.

    The first Ctrl-C is passed on to every worker (each stops after its running candidate); a
    second one terminates them (their running trials are failed and re-queued for the next run).
    SIGTERM is passed on to every worker (each fails and re-queues its running trial), then
    :class:`Terminated` is raised here. A worker killed by a signal (out of memory, a candidate
    that crashes its process) is replaced while the run's budget is not met, at most ``budget``
    times; one that exits with an error (code 2: its storage failed for good) is not.

    Returns:
      The exit code of each worker slot's last process (negative: killed by that signal).
    """
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    places = plan(jobs)

    def start(i: int):
        with _environ(places[i].env):  # read by the child's OpenBLAS and CUDA when they load
            p = ctx.Process(target=_child, args=(job, i, places[i].cpus), name=f"ntknas-worker-{i}")
            p.start()
        return p

    procs = [start(i) for i in range(jobs)]
    restarts, reported = 0, set()

    def done_so_far() -> int:  # waits out a database server's restart, as the workers do
        return _storage.persistent(
            lambda: finished_trials(store, study, job.run_id), job.storage, job.reconnect
        )

    def signal_all(signum):
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signum)

    def replace_the_dead(stopper) -> None:
        nonlocal restarts
        for i, p in enumerate(procs):
            if p.is_alive() or p.exitcode is None or p.exitcode >= 0 or p.pid in reported:
                continue
            done = done_so_far()
            again = not stopper.requested and done < job.budget and restarts < job.budget
            print(
                f"worker {i} (pid {p.pid}) ended with signal {-p.exitcode}; {done} of "
                f"{job.budget} trials done" + ("; starting another" if again else ""),
                file=sys.stderr,
            )
            reported.add(p.pid)
            if again:
                procs[i] = start(i)
                restarts += 1

    try:
        with (
            StopOnSigint(
                on_first=lambda: signal_all(signal.SIGINT),
                on_term=lambda: signal_all(signal.SIGTERM),
            ) as stopper,
            Progress(progress, job.budget, console) as bar,
        ):
            while any(p.is_alive() for p in procs):
                for p in procs:
                    p.join(timeout=POLL_SECONDS / len(procs))
                replace_the_dead(stopper)
                if progress:
                    bar.advance_to(study, done_so_far())
            if progress:
                bar.advance_to(study, done_so_far())
    except KeyboardInterrupt:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join()
        raise
    except Terminated:
        for p in procs:  # each fails and re-queues its running trial, then exits
            p.join()
        raise
    done = done_so_far()
    for i, p in enumerate(procs):
        if p.exitcode not in (0, 130) and p.pid not in reported:
            how = f"signal {-p.exitcode}" if p.exitcode < 0 else f"exit code {p.exitcode}"
            print(
                f"worker {i} (pid {p.pid}) ended with {how}; {done} of {job.budget} trials done",
                file=sys.stderr,
            )
    return [p.exitcode for p in procs]


POLL_SECONDS = 1.0


def finished_trials(store, study, run_id: str) -> int:
    """Finished trials of the run (a dead trial that was retried, or a candidate outside the
    parameter budget, is not counted)."""
    trials = store.get_all_trials(store.get_study_id_from_name(study.study_name), deepcopy=False)
    mine = [t for t in trials if t.system_attrs.get(_heartbeat.RUN_ATTR) == run_id]
    retried = {n for t in mine for n in t.system_attrs.get("retry_history", [])}
    return sum(
        t.state.is_finished() and t.number not in retried and not out_of_budget(t) for t in mine
    )


def _child(job: Job, index: int, cpus: tuple[int, ...] | None) -> None:
    """A worker process: pinned to its cores, in its own process group (Ctrl-C reaches the
    parent, which passes one on), then the same loop as a single-process search. A storage that
    fails for good is one line on stderr and exit code 2."""
    os.setpgid(0, 0)
    if cpus:
        os.sched_setaffinity(0, cpus)
    try:
        with StopOnSigint(announce=False) as stopper:
            store, study = open_study(job)
            run_worker(job, store, study, stopper, index=index)
    except KeyboardInterrupt:
        sys.exit(130)
    except Terminated:
        sys.exit(Terminated.exit_code)
    except ValueError as e:
        print(f"worker {index} (pid {os.getpid()}): error: {e}", file=sys.stderr)
        sys.exit(2)


class _environ:
    """Sets environment variables for the ``with`` block (spawned children inherit them)."""

    def __init__(self, overrides: dict[str, str]):
        self.overrides = overrides

    def __enter__(self):
        self.saved = {k: os.environ.get(k) for k in self.overrides}
        os.environ.update(self.overrides)

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        return False
