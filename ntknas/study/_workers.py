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

Faults: a worker killed at any point leaves a trial that a peer fails and re-queues (at once when
it died claiming it, after the grace period otherwise); a candidate that kills its worker again
and again is given up (:class:`PoisonGuard`); Ctrl-C twice or SIGTERM fail the running trial and
re-queue it; a database server that restarts is waited for (:func:`_storage.persistent`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import warnings
import zlib

from . import _budget, _heartbeat, _storage
from ._ui import Terminated

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


class ClaimLock:
    """Serializes claims on one study across processes; ``with lock(): ...``.

    A PostgreSQL advisory lock, or a lock file next to a SQLite or journal file (removed when
    released; one left by a killed process is taken over, as the kernel released its ``flock``).
    Elsewhere (``memory``, servers without an advisory lock we use) a lock of this process only.

    Attributes:
      shared: the lock holds across processes, so a claim seen unfinished under it is dead.
    """

    def __init__(self, storage, url: str, study_name: str):
        kind = _storage.storage_kind(url)
        self.shared = False
        self._lock = threading.Lock()
        self._enter = lambda: self._lock
        if kind == "postgresql":
            key = zlib.crc32(f"ntknas:{study_name}".encode())
            self._enter = lambda: _pg_lock(storage.engine, key)
            self.shared = True
        elif kind in ("sqlite", "journal"):
            path = url[len("sqlite:///") :] if kind == "sqlite" else _storage.journal_path(url)
            if path and path != ":memory:":
                self.path = f"{path}.{zlib.crc32(study_name.encode()):08x}.lock"
                self._enter = lambda: _file_lock(self.path)
                self.shared = True

    def __call__(self):
        return self._enter()


@contextlib.contextmanager
def _pg_lock(engine, key: int):
    import sqlalchemy

    # A transaction-scoped lock: released on commit, rollback, or when a killed worker's
    # connection drops, so a dead worker never holds it.
    conn = engine.connect()
    try:
        tx = conn.begin()
        conn.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
        yield
        # The claim is done. A failed commit means the server dropped the connection, which
        # released the lock anyway: nothing to undo.
        with contextlib.suppress(Exception):
            tx.commit()
    finally:
        with contextlib.suppress(Exception):
            conn.close()


@contextlib.contextmanager
def _file_lock(path: str):
    import fcntl

    # flock is released by the kernel when its holder dies. The file is removed on release, so a
    # finished search leaves none; a process that locked a file another just removed sees that
    # the path no longer names its file, and opens it again.
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            held = os.fstat(fd)
            try:
                now = os.stat(path)
                same = (now.st_ino, now.st_dev) == (held.st_ino, held.st_dev)
            except FileNotFoundError:
                same = False
        except BaseException:
            os.close(fd)
            raise
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)  # releases the flock


# --- the worker loop -----------------------------------------------------------------------------


class PoisonGuard:
    """A scorer that refuses configs that killed their workers too often (the study's poison
    list, :func:`~ntknas.study._heartbeat.poisoned_configs`), and otherwise scores as ``scorer``.

    Such a config, drawn again by a sampler, fails at once ("PoisonedCandidate: ...") instead of
    killing another worker.
    """

    def __init__(self, scorer, storage, study_id: int):
        self.scorer, self.storage, self.study_id = scorer, storage, study_id

    def score(self, space, config, options, blocks: bool = False):
        from ..scoring import canonical_json

        why = _heartbeat.poisoned_configs(self.storage, self.study_id).get(canonical_json(config))
        if why is not None:
            raise PoisonedCandidate(f"not scored again: {why}")
        return self.scorer.score(space, config, options, blocks=blocks)

    def __getattr__(self, name):
        return getattr(self.scorer, name)


class PoisonedCandidate(RuntimeError):
    """A config that killed its worker every time it was scored."""


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
      retries: a candidate whose scoring killed a worker is retried at most this many times.
      reconnect: seconds to retry a database server that went away before giving up.
    """

    def __init__(
        self,
        study,
        storage,
        url,
        objective,
        run_id,
        budget,
        stopper,
        on_trial=None,
        *,
        retries: int = _storage.DEFAULT_RETRIES,
        reconnect: float = _storage.RECONNECT_SECONDS,
    ):
        self.study, self.storage, self.objective, self.url = study, storage, objective, url
        self.run_id, self.budget, self.stopper = run_id, budget, stopper
        self.retries, self.reconnect = retries, reconnect
        self.on_trial = on_trial or (lambda study, trial: None)
        self.lock = ClaimLock(storage, url, study.study_name)
        self.study_id = storage.get_study_id_from_name(study.study_name)
        self.me = worker_id()
        self.poll = min(POLL_SECONDS, _heartbeat.heartbeat_interval(storage) or POLL_SECONDS)
        objective.on_wait = self.fail_stale  # a worker waiting on a dead peer's duplicate

    def _persistent(self, fn):
        return _storage.persistent(fn, self.url, self.reconnect)

    def fail_stale(self) -> None:
        self._persistent(self._fail_stale)

    def _fail_stale(self) -> None:
        with self.lock():
            self._fail_stale_locked()

    def _fail_stale_locked(self) -> int:
        return _heartbeat.fail_stale_trials(
            self.study, self.storage, claims_locked=self.lock.shared, retries=self.retries
        )

    def run(self) -> int:
        """Runs trials until the budget is met (or a stop is requested); returns how many.

        Raises:
          ValueError: the storage failed for good (see :func:`~ntknas.study._storage.persistent`).
          KeyboardInterrupt, Terminated: after failing and re-queueing the running trial.
        """
        done = 0
        while not self.stopper.requested:
            claimed = self._persistent(self._claim)
            if claimed is None:
                if not self._persistent(self._run_has_running_trials):
                    break
                time.sleep(self.poll)  # a peer may die: its trial comes back to be retried
                continue
            frozen = self._run_one(*claimed)
            done += 1
            if self.objective.misses >= _budget.OUT_OF_BUDGET_LIMIT:
                raise ValueError(
                    f"{self.objective.misses} candidates in a row were outside the budget "
                    f"({self.objective.budget}); no network of the space (or too few for the "
                    "sampler to find) meets it: widen it or lift a bound with none"
                )
            if frozen is not None:
                self.on_trial(self.study, frozen)
            if self._persistent(self._grid_exhausted):
                break
        return done

    def _claim(self):
        from optuna.trial import TrialState

        with self.lock():
            self._fail_stale_locked()
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
            # Last: a trial without it is a claim that never finished (see fail_stale_trials).
            self.storage.set_trial_system_attr(trial_id, _heartbeat.WORKER_ATTR, self.me)
        return trial, trial_id

    def units(self, trials) -> int:
        """Trials counted against this run's budget: a dead trial and its retry count once, a
        candidate outside the parameter budget (not scored) not at all."""
        mine = [t for t in trials if t.system_attrs.get(_heartbeat.RUN_ATTR) == self.run_id]
        return len(mine) - sum(
            "failed_trial" in t.system_attrs or _budget.out_of_budget(t) for t in mine
        )

    def _run_has_running_trials(self) -> bool:
        from optuna.trial import TrialState

        running = self.storage.get_all_trials(
            self.study_id, deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)
        )
        return any(t.system_attrs.get(_heartbeat.RUN_ATTR) == self.run_id for t in running)

    def _run_one(self, trial, trial_id):
        values, interrupt, lost_storage = None, None, False
        with _heartbeat.HeartbeatThread(self.storage, trial_id):
            try:
                values = self.objective(trial)
            except Exception as e:  # the objective recorded why (fail_reason); the search goes on
                # unless the storage failed under it: then the candidate is not to blame
                lost_storage = _storage.caused_by_storage(e)
            except (KeyboardInterrupt, Terminated) as e:  # stop now: fail this trial, re-queue it
                interrupt = e
        requeue = interrupt is not None or lost_storage
        frozen = self._persistent(lambda: self._tell(trial, trial_id, values, requeue))
        if interrupt is not None:
            raise interrupt
        return frozen

    def _tell(self, trial, trial_id, values, requeue: bool):
        import optuna
        from optuna.trial import TrialState

        if self.storage.get_trial(trial_id).state.is_finished():
            # Our heartbeats stalled past the grace period (or the storage went away and came
            # back after it): a peer failed and re-queued the trial, and the retry will score it
            # again. Drop this result.
            return None
        try:
            frozen = self.study.tell(
                trial, values, state=TrialState.FAIL if values is None else None
            )
        except optuna.exceptions.UpdateFinishedTrialError:  # failed by a peer meanwhile
            return None
        if requeue and values is None:  # not the candidate's fault: another worker retries it
            _heartbeat.retry_stale_trial(self.study, frozen)
        return frozen

    def _grid_exhausted(self) -> bool:
        sampler = self.study.sampler
        return hasattr(sampler, "is_exhausted") and sampler.is_exhausted(self.study)
