"""Heartbeats: a worker that dies mid-candidate leaves its trial to be failed and retried.

A running trial is refreshed every ``heartbeat`` seconds by a thread of the worker scoring it.
When a worker is killed (SIGKILL, out of memory, a preempted machine), the heartbeats stop; after
``grace`` seconds another worker marks the trial FAIL and re-queues it as a WAITING trial with the
same parameters (:func:`retry_stale_trial`), which the next free worker runs. A worker killed
between creating its trial and its first heartbeat leaves a claim that never finished; it is failed
at once by the next worker that holds the claim lock. A config that kills its worker every time is
given up after ``retries`` retries ("killed its worker N times") and never scored again.

RDB storages use Optuna's own heartbeat table (server time, so machines need not agree on the
clock). Optuna's journal storage has no heartbeat, so :class:`HeartbeatJournalStorage` records one
as a trial system attribute (this machine's clock: meant for processes on one machine).
"""

from __future__ import annotations

import copy
import threading
import time

# Imported only when a storage is opened (``ntknas.study`` stays light to import).
from optuna.storages import JournalStorage

RUN_ATTR = "ntknas:run"  # system attribute: the run (one command's budget) a trial counts for
WORKER_ATTR = "ntknas:worker"  # system attribute: "host:pid" of the process scoring the trial
BEAT_ATTR = "ntknas:heartbeat"  # system attribute (journal only): time.time() of the last beat
KILLED_ATTR = "ntknas:killed"  # system attribute: its worker died scoring it (no heartbeat)
POISON_ATTR = "ntknas:poison"  # system attribute: its config kills workers; never retried


def retry_stale_trial(study, trial) -> None:
    """Re-queues a trial whose worker died or gave it up: a WAITING copy with the same parameters.

    The copy keeps the trial's run, so it replaces the dead trial in that run's budget, and
    records ``failed_trial`` (the first trial of the chain) and ``retry_history`` as Optuna's
    ``RetryFailedTrialCallback`` does. A trial that no run claimed is not retried (no budget counts
    it).

    Args:
      study: the study.
      trial: the failed ``FrozenTrial``.
    """
    import optuna

    attrs = dict(trial.system_attrs)
    if RUN_ATTR not in attrs or attrs.get(POISON_ATTR):
        return
    for key in (BEAT_ATTR, WORKER_ATTR, KILLED_ATTR):
        attrs.pop(key, None)
    attrs["failed_trial"] = attrs.get("failed_trial", trial.number)
    attrs["retry_history"] = [*attrs.get("retry_history", []), trial.number]
    study.add_trial(
        optuna.create_trial(
            state=optuna.trial.TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            system_attrs=attrs,
        )
    )


def chains(trials) -> dict[int, list]:
    """Trials grouped by retry chain (a dead trial and its retries), keyed by the chain's first
    trial number: a chain counts once in its run's budget."""
    out: dict[int, list] = {}
    for t in trials:
        out.setdefault(t.system_attrs.get("failed_trial", t.number), []).append(t)
    return out


class HeartbeatJournalStorage(JournalStorage):
    """Optuna's journal-file storage with heartbeats kept as trial system attributes.

    Args:
      path: the journal file (created if missing).
      heartbeat: seconds between beats, or None for none.
      grace: seconds without a beat after which a running trial is stale.
    """

    def __init__(self, path: str, heartbeat: int | None = None, grace: int | None = None):
        from optuna.storages.journal import JournalFileBackend

        super().__init__(JournalFileBackend(path))
        self.path = path
        self.heartbeat = heartbeat
        self.grace = grace

    def record_heartbeat(self, trial_id: int) -> None:
        self.set_trial_system_attr(trial_id, BEAT_ATTR, time.time())

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:  # as Optuna's RDBStorage
        """Running trials of the study whose last beat is older than ``grace`` seconds."""
        from optuna.trial import TrialState

        if self.heartbeat is None:
            return []
        now = time.time()
        running = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
        return [
            self.get_trial_id_from_study_id_trial_number(study_id, t.number)
            for t in running
            if BEAT_ATTR in t.system_attrs and now - t.system_attrs[BEAT_ATTR] > self.grace
        ]


def heartbeat_interval(storage) -> int | None:
    """Seconds between beats for ``storage``, or None when it has no heartbeats."""
    if isinstance(storage, HeartbeatJournalStorage):
        return storage.heartbeat
    return getattr(storage, "heartbeat_interval", None)


def grace_period(storage) -> int | None:
    if isinstance(storage, HeartbeatJournalStorage):
        return storage.grace
    return getattr(storage, "grace_period", None)


def beat(storage, trial_id: int) -> None:
    """Records that the trial's worker is alive (no-op for storages without heartbeats)."""
    if heartbeat_interval(storage) is not None:
        storage.record_heartbeat(trial_id)


def fail_stale_trials(study, storage, *, retries: int, claims_locked: bool = False) -> int:
    """Fails the study's trials whose worker died, and re-queues them.

    A trial is dead when its heartbeats stopped ``grace`` seconds ago, or when its claim never
    finished (no ``ntknas:worker`` attribute: the worker died between creating the trial and its
    first heartbeat). ``claims_locked``: the caller holds the study's claim lock, which every
    claim holds from start to end, so an unfinished claim it sees is dead now; otherwise one is
    dead when it started more than ``grace`` seconds ago.

    A dead trial that had claimed and started its candidate is marked ``ntknas:killed``. When its
    config (or, before the config was drawn, its retry chain) has now killed ``retries + 1``
    workers, counting every trial of the study, it is not retried: it is recorded as FAIL with
    ``fail_reason`` "killed its worker N times" and the ``ntknas:poison`` attribute, and
    :class:`~ntknas.study._workers.PoisonGuard` refuses to score the config again.

    Returns:
      How many trials were failed.
    """
    import datetime

    import optuna
    from optuna.trial import TrialState

    study_id = storage.get_study_id_from_name(study.study_name)
    grace = grace_period(storage)
    stale = set(storage._get_stale_trial_ids(study_id)) if heartbeat_interval(storage) else set()
    running = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
    old = datetime.datetime.now() - datetime.timedelta(seconds=grace or 0)
    unclaimed = {
        storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        for t in running
        if WORKER_ATTR not in t.system_attrs
        and (claims_locked or (grace and t.datetime_start and t.datetime_start < old))
    }
    failed = 0
    for trial_id in sorted(stale | unclaimed):
        trial = storage.get_trial(trial_id)
        killed = trial_id not in unclaimed
        kills = 1 + _kills(storage, study_id, trial) if killed else 0
        poison = RUN_ATTR in trial.system_attrs and bool(trial.params) and kills > retries
        try:  # attributes first, while the trial still runs: a finished one takes none
            if killed:
                storage.set_trial_system_attr(trial_id, KILLED_ATTR, True)
            if poison:
                storage.set_trial_user_attr(
                    trial_id, "fail_reason", f"killed its worker {kills} times"
                )
                storage.set_trial_system_attr(trial_id, POISON_ATTR, True)
            storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:  # it finished after all
            continue
        failed += 1
        if not poison:
            retry_stale_trial(study, copy.deepcopy(storage.get_trial(trial_id)))
    return failed


def _kills(storage, study_id: int, trial) -> int:
    """Earlier trials of the study killed while scoring ``trial``'s config (its retry chain's,
    when it died before drawing one): the config's count, whichever worker drew it."""
    from optuna.trial import TrialState

    config = trial.user_attrs.get("config")
    chain = trial.system_attrs.get("failed_trial", trial.number)
    failed = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.FAIL,))
    return sum(
        bool(t.system_attrs.get(KILLED_ATTR))
        and (
            t.user_attrs.get("config") == config
            if config is not None
            else t.system_attrs.get("failed_trial", t.number) == chain
        )
        for t in failed
    )


def poisoned_configs(storage, study_id: int) -> dict[str, str]:
    """Configs (canonical JSON) whose trials were failed for killing their workers -> why."""
    from optuna.trial import TrialState

    failed = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.FAIL,))
    return {
        t.user_attrs["config"]: f"{t.user_attrs.get('fail_reason')} (trial {t.number})"
        for t in failed
        if t.system_attrs.get(POISON_ATTR) and "config" in t.user_attrs
    }


class HeartbeatThread:
    """Beats for one trial every ``heartbeat`` seconds while the ``with`` block runs."""

    def __init__(self, storage, trial_id: int):
        self.storage, self.trial_id = storage, trial_id
        self.interval = heartbeat_interval(storage)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                beat(self.storage, self.trial_id)
            except Exception:  # finished meanwhile, or a transient database error: try again
                pass

    def __enter__(self):
        if self.interval is not None:
            self._thread = threading.Thread(target=self._run, daemon=True, name="heartbeat")
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        return False
