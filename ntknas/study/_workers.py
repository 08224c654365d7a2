"""Workers: processes that share one study through its storage, with an exact trial budget.

A *run* is one command (``ntknas search`` or ``ntknas worker``) with its ``--trials N``. Every
trial a run creates carries the run's id (system attribute ``ntknas:run``), and the run is done
when it holds N trials, counting a dead worker's trial and its retry as one. The ``--jobs``
processes of a run share that budget, so when one dies the others take over its share; runs on
other machines have budgets of their own.

Claiming the next trial (fail dead trials, count the budget, ask Optuna) happens under a lock per
study: a PostgreSQL advisory lock, or a file lock next to a SQLite or journal file. So two
workers never both take the last trial of a budget, and a dead trial's retry is never created
while another worker counts.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import warnings
import zlib

from . import _heartbeat, _storage

POLL_SECONDS = 1.0  # how often an idle worker looks for retries, or a waiting one for a result


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def sampler_seed(seed: int, trials_at_start: int, salt: str) -> int:
    """The seed of this worker's sampler: a resumed study does not replay its first draws, and
    workers of one study (``salt``: run and worker index) do not propose the same sequence."""
    if not salt:
        return seed + trials_at_start  # one process: deterministic for a given history
    return zlib.crc32(f"{seed}:{trials_at_start}:{salt}".encode()) % (2**31)


# --- the claim lock ------------------------------------------------------------------------------


def study_lock(storage, url: str, study_name: str):
    """A context-manager factory that serializes claims on ``study_name`` across processes."""
    kind = _storage.storage_kind(url)
    if kind == "postgresql":
        key = zlib.crc32(f"ntknas:{study_name}".encode())
        return lambda: _pg_lock(storage.engine, key)
    if kind in ("sqlite", "journal"):
        path = url[len("sqlite:///") :] if kind == "sqlite" else _storage.journal_path(url)
        if path and path != ":memory:":
            lock_path = f"{path}.{zlib.crc32(study_name.encode()):08x}.lock"
            return lambda: _file_lock(lock_path)
    # memory (one process), or a server without an advisory lock we use: a process-local lock
    # keeps the threads of this process apart; budgets stay exact per process.
    lock = threading.Lock()
    return lambda: lock


@contextlib.contextmanager
def _pg_lock(engine, key: int):
    import sqlalchemy

    # A transaction-scoped lock: released on commit, rollback, or when a killed worker's
    # connection drops, so a dead worker never holds it.
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
        yield


@contextlib.contextmanager
def _file_lock(path: str):
    import fcntl

    # flock: released by the kernel when the holder dies.
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --- the worker loop -----------------------------------------------------------------------------


class Worker:
    """Runs trials of one run on one study until the run's budget is met.

    Args:
      study: the ``optuna.Study``.
      storage: its storage (as opened by :func:`ntknas.study.open_storage`).
      url: the storage URL (for the lock).
      objective: the :class:`~ntknas.study._objective.Objective`.
      run_id: the run's id; trials are counted against ``budget`` by it.
      budget: trials the run holds when it is done.
      stopper: has ``requested``: stop after the running candidate.
      on_trial: called with (study, FrozenTrial) after each trial this worker ran.
    """

    def __init__(self, study, storage, url, objective, run_id, budget, stopper, on_trial=None):
        self.study, self.storage, self.objective = study, storage, objective
        self.run_id, self.budget, self.stopper = run_id, budget, stopper
        self.on_trial = on_trial or (lambda study, trial: None)
        self.lock = study_lock(storage, url, study.study_name)
        self.study_id = storage.get_study_id_from_name(study.study_name)
        self.me = worker_id()
        self.poll = min(POLL_SECONDS, _heartbeat.heartbeat_interval(storage) or POLL_SECONDS)
        objective.on_wait = self.fail_stale  # a worker waiting on a dead peer's duplicate

    def fail_stale(self) -> None:
        with self.lock():
            _heartbeat.fail_stale_trials(self.study, self.storage)

    def run(self) -> int:
        """Runs trials until the budget is met (or a stop is requested); returns how many."""
        done = 0
        while not self.stopper.requested:
            claimed = self._claim()
            if claimed is None:
                if not self._run_has_running_trials():
                    break
                time.sleep(self.poll)  # a peer may die: its trial comes back to be retried
                continue
            frozen = self._run_one(*claimed)
            done += 1
            if frozen is not None:
                self.on_trial(self.study, frozen)
            if self._grid_exhausted():
                break
        return done

    def _claim(self):
        from optuna.trial import TrialState

        with self.lock():
            _heartbeat.fail_stale_trials(self.study, self.storage)
            trials = self.storage.get_all_trials(self.study_id, deepcopy=False)
            waiting = any(t.state == TrialState.WAITING for t in trials)
            if not waiting and self.units(trials) >= self.budget:
                return None
            with warnings.catch_warnings():  # "heartbeats are for optimize()": we beat ourselves
                warnings.simplefilter("ignore")
                trial = self.study.ask()  # pops a waiting trial (a retry) first
            trial_id = self.storage.get_trial_id_from_study_id_trial_number(
                self.study_id, trial.number
            )
            _heartbeat.beat(self.storage, trial_id)  # before the run tag: see retry_stale_trial
            attrs = self.storage.get_trial_system_attrs(trial_id)
            if _heartbeat.RUN_ATTR not in attrs:
                self.storage.set_trial_system_attr(trial_id, _heartbeat.RUN_ATTR, self.run_id)
            self.storage.set_trial_system_attr(trial_id, _heartbeat.WORKER_ATTR, self.me)
        return trial, trial_id

    def units(self, trials) -> int:
        """Trials counted against this run's budget: a dead trial and its retry count once."""
        mine = [t for t in trials if t.system_attrs.get(_heartbeat.RUN_ATTR) == self.run_id]
        return len(mine) - sum("failed_trial" in t.system_attrs for t in mine)

    def _run_has_running_trials(self) -> bool:
        from optuna.trial import TrialState

        running = self.storage.get_all_trials(
            self.study_id, deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)
        )
        return any(t.system_attrs.get(_heartbeat.RUN_ATTR) == self.run_id for t in running)

    def _run_one(self, trial, trial_id):
        import optuna
        from optuna.trial import TrialState

        values, interrupt = None, None
        with _heartbeat.HeartbeatThread(self.storage, trial_id):
            try:
                values = self.objective(trial)
            except Exception:  # the objective recorded why (fail_reason); the search goes on
                pass
            except KeyboardInterrupt as e:  # a second Ctrl-C: fail this trial, then stop
                interrupt = e
        try:
            frozen = self.study.tell(
                trial, values, state=TrialState.FAIL if values is None else None
            )
        except optuna.exceptions.UpdateFinishedTrialError:
            # Our heartbeats stalled past the grace period: the trial was failed and re-queued by
            # a peer, and the retry will score it again. Drop this result.
            frozen = None
        if interrupt is not None:
            raise interrupt
        return frozen

    def _grid_exhausted(self) -> bool:
        sampler = self.study.sampler
        return hasattr(sampler, "is_exhausted") and sampler.is_exhausted(self.study)
