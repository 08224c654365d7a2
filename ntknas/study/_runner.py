"""The study runner: ``ntknas.search`` with persistence, progress, Ctrl-C and failure handling."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import threading
import time
import uuid
from typing import Any

from . import _objective, _samplers, _storage


def search(
    space,
    n_trials: int = 20,
    *,
    objective: str = _objective.DEFAULT_OBJECTIVE,
    sampler: str = "tpe",
    seed: int = 0,
    storage: str = _storage.DEFAULT_STORAGE,
    study_name: str | None = None,
    max_params: int | None = None,
    progress: bool = False,
    console=None,
    jobs: int = 1,
    heartbeat: int | None = _storage.DEFAULT_HEARTBEAT,
    grace: int | None = None,
    **score_options: Any,
):
    """Training-free architecture search: Optuna proposes, the full O×O NTK scores.

    Runs ``n_trials`` more trials in the study ``study_name`` (created, or joined when it
    exists: the same call on several machines works on one study). Every proxy of every
    candidate is saved as trial user attributes, so the study can be read back with
    :func:`ntknas.leaderboard` or ``optuna-dashboard``. A candidate that fails (does not build,
    NaN kernel, out of memory) becomes a failed trial whose ``fail_reason`` attribute says why,
    and the search goes on. A config already scored in the study (by any worker) is not scored
    again. The first Ctrl-C stops after the running candidate (finished trials are kept); a
    second one interrupts at once.

    Args:
      space: a space name (``ntknas spaces``) or a :class:`search_spaces.SearchSpace`.
      n_trials: trials this call adds to the study (all its ``jobs`` together); a trial whose
        worker died and that was retried counts once.
      objective: proxies with directions, e.g. ``"ntk_cond:min"``, ``"ntk_cond:min,params:min"``
        (multi-objective; use ``sampler="tpe"`` or ``"nsga2"``), or a rank sum such as
        ``"rank(ntk_cond:min+ntk_trace:max)"`` (a Pareto search over its parts; the leaderboard
        orders by the rank sum). Default: :data:`DEFAULT_OBJECTIVE`.
      sampler: ``"tpe"``, ``"random"``, ``"nsga2"``, ``"grid"`` or ``"qmc"``.
      seed: seeds the sampler, the initialization and the data.
      storage: an Optuna storage URL (``"memory"`` for none); SQLite in the working directory by
        default. Several processes need ``journal:PATH`` (one machine) or ``postgresql://...``.
      study_name: defaults to ``"{space}-{objective}"``.
      max_params: candidates with more parameters are infeasible (Optuna constraint) and are not
        scored.
      progress: show a rich progress bar (trials, best so far, seconds per candidate).
      console: a ``rich.console.Console`` for the progress bar and messages.
      jobs: worker processes on this machine, each with its own JAX runtime; one per
        accelerator where there are several, the CPU cores split between them otherwise.
      heartbeat: seconds between heartbeats of a running trial (None: none). A trial without
        one for ``grace`` seconds is failed and retried by another worker.
      grace: seconds (default ``4 * heartbeat``).
      **score_options: fields of :class:`ntknas.scoring.ScoreOptions` (batch, data, num_classes,
        input_shape, bn, float64, method); ``bn`` defaults to :data:`DEFAULT_SEARCH_BN` here.

    Returns:
      The ``optuna.Study``.

    Raises:
      ValueError: unknown space, proxy, direction or sampler; a bad or unreachable storage; a
        study that exists with another space, objective or scoring options; ``jobs > 1`` on a
        storage other processes cannot share.
      KeyboardInterrupt: on a second Ctrl-C (the study keeps every finished trial).

    Example:
      >>> study = ntknas.search("nb201", n_trials=50, objective="ntk_cond:min,params:min")
      >>> ntknas.leaderboard(study).head()
    """
    from search_spaces import SearchSpace, get_space

    from ..scoring import ScoreOptions

    space = space if isinstance(space, SearchSpace) else get_space(space)
    targets = _objective.parse_objective(objective)
    options = ScoreOptions(seed=seed, **{"bn": _objective.DEFAULT_SEARCH_BN, **score_options})
    if not isinstance(n_trials, int) or n_trials < 0:
        raise ValueError(f"n_trials must be a non-negative int, got {n_trials!r}")
    if max_params is not None and (not isinstance(max_params, int) or max_params < 1):
        raise ValueError(f"max_params must be a positive int, got {max_params!r}")
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive int, got {jobs!r}")
    kind = _storage.storage_kind(storage)
    if jobs > 1 and kind in ("memory", "sqlite"):
        raise ValueError(
            f"jobs={jobs} needs a storage that several processes can write: {kind} is not for "
            "parallel writers; use journal:ntknas.log (one machine) or postgresql://..."
        )
    with _quiet_optuna():
        _samplers.make_sampler(sampler, space, seed)  # fail on a bad sampler before any I/O
        _check_overrides(space, options)
    objective_text = _objective.objective_str(targets)
    job = Job(
        space=space,
        objective=objective_text,
        options=options,
        sampler=sampler,
        seed=seed,
        storage=storage,
        study_name=study_name or f"{space.name}-{objective_text}",
        max_params=max_params,
        heartbeat=heartbeat,
        grace=grace,
        run_id=uuid.uuid4().hex,
        budget=n_trials,
        salted=jobs > 1 or kind not in ("memory", "sqlite"),
    )
    store, study = open_study(job)
    if jobs > 1:
        from ._processes import run_processes

        run_processes(job, jobs, study, store, progress=progress, console=console)
        return study
    with _StopOnSigint() as stopper, _Progress(progress, n_trials, console) as bar:
        run_worker(job, store, study, stopper, index=0, bar=bar)
    return study


@dataclasses.dataclass(frozen=True, kw_only=True)
class Job:
    """What every worker process of one run needs (picklable: sent to ``--jobs`` processes)."""

    space: Any
    objective: str
    options: Any
    sampler: str
    seed: int
    storage: str
    study_name: str
    max_params: int | None
    heartbeat: int | None
    grace: int | None
    run_id: str
    budget: int
    salted: bool  # several workers: give each its own sampler seed


def open_study(job: Job):
    """Opens (or creates) the study of ``job`` and checks that it is the same search.

    Returns:
      (storage, study).
    """
    import optuna

    store = _storage.open_storage(job.storage, heartbeat=job.heartbeat, grace=job.grace)
    targets = _objective.parse_objective(job.objective)
    attrs = {"space": job.space.name, "objective": job.objective, "options": _options_dict(job)}
    with _quiet_optuna():
        study = optuna.create_study(
            storage=store,
            study_name=job.study_name,
            directions=[t.direction for t in targets],
            load_if_exists=True,
        )
    _check_resume(study, attrs, targets)
    for k, v in attrs.items():
        if study.user_attrs.get(k) != v:
            study.set_user_attr(k, v)
    return store, study


def _options_dict(job: Job) -> dict:
    from ..scoring import options_dict

    return options_dict(job.options)


def run_worker(job: Job, store, study, stopper, index: int = 0, bar=None) -> int:
    """One worker: its sampler, its scorer, trials until the run's budget is met."""
    from ..scoring import Scorer
    from ._workers import Worker, sampler_seed

    salt = f"{job.run_id}:{index}" if job.salted else ""
    with _quiet_optuna():
        seed = sampler_seed(job.seed, len(study.get_trials(deepcopy=False)), salt)
        study.sampler = _samplers.make_sampler(job.sampler, job.space, seed)
    messages: list[str] = []
    obj = _objective.Objective(
        job.space,
        _objective.parse_objective(job.objective),
        Scorer(),
        job.options,
        job.max_params,
        on_fail=lambda n, reason: messages.append(f"trial {n} failed: {reason}"),
    )

    def on_trial(study, trial):
        if bar is not None:
            bar.update(study, trial, messages)
        else:
            messages.clear()

    worker = Worker(study, store, job.storage, obj, job.run_id, job.budget, stopper, on_trial)
    with _quiet_optuna():
        return worker.run()


def _check_overrides(space, options) -> None:
    """Fails now, not in every trial, when ``options.overrides`` do not fit the space."""
    import optuna

    from ..scoring import apply_overrides

    if options.overrides:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        apply_overrides(space, space.suggest(study.ask()), options)


def _check_resume(study, attrs: dict, targets) -> None:
    old = study.user_attrs
    if not old:
        return
    for key in ("space", "objective"):
        if key in old and old[key] != attrs[key]:
            raise ValueError(
                f"study {study.study_name!r} was run with {key} {old[key]!r}, not {attrs[key]!r}; "
                "use another --study name"
            )
    if "options" in old and old["options"] != attrs["options"]:
        diff = sorted(k for k in attrs["options"] if old["options"].get(k) != attrs["options"][k])
        was = ", ".join(f"{k}={old['options'].get(k)!r}" for k in diff)
        raise ValueError(
            f"study {study.study_name!r} was scored with {was}; scores would not be comparable "
            "(use the same options or another --study name)"
        )
    directions = [d.name.lower() for d in study.directions]
    if directions != [t.direction for t in targets]:
        raise ValueError(f"study {study.study_name!r} has directions {directions}")


@contextlib.contextmanager
def _quiet_optuna():
    import optuna

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


class _StopOnSigint:
    """First Ctrl-C: ask the study to stop after the running trial. Second: interrupt now."""

    def __init__(self, announce: bool = True, on_first=None):
        self.requested = False
        self._previous = None
        self.announce, self.on_first = announce, on_first

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if self.announce:
            print("\nstopping after the running candidate (Ctrl-C again to abort it)", flush=True)
        if self.on_first is not None:
            self.on_first()

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


class _Progress:
    """A rich progress bar: trials done, best so far, seconds per candidate."""

    def __init__(self, enabled: bool, total: int, console=None):
        self.enabled, self.total, self.console = enabled, total, console
        self._start = time.perf_counter()
        self._done = 0

    def __enter__(self):
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._bar = Progress(
                TextColumn("[bold]search"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("best {task.fields[best]}"),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                console=self.console,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("search", total=self.total, best="-", rate="")
        return self

    def update(self, study, trial, messages: list[str]) -> None:
        self._done += 1
        if not self.enabled:
            messages.clear()
            return
        for m in messages:
            self._bar.console.print(f"[yellow]{m}")
        messages.clear()
        per = (time.perf_counter() - self._start) / self._done
        self._bar.update(self._task, advance=1, best=_best_text(study), rate=f"{per:.2f} s/cand")

    def advance_to(self, study, done: int) -> None:
        """For a bar fed by polling the storage (``--jobs``): ``done`` trials of the run so far."""
        if not self.enabled or done <= self._done:
            return
        self._done = done
        rate = f"{(time.perf_counter() - self._start) / done:.2f} s/cand"
        self._bar.update(self._task, completed=done, best=_best_text(study), rate=rate)

    def __exit__(self, *exc):
        if self.enabled:
            self._bar.__exit__(*exc)
        return False


def _best_text(study) -> str:
    try:
        if len(study.directions) == 1:
            v = study.best_value
            return f"{v:.4g}" if math.isfinite(v) else str(v)
        return f"{len(study.best_trials)} on the Pareto front"
    except ValueError:  # no completed trial yet
        return "-"
