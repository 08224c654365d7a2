"""``ntknas.search``: checks its arguments, opens the study, runs its workers (this process, or
``jobs`` processes)."""

from __future__ import annotations

import uuid
from typing import Any

from .. import proxies
from . import _objective, _samplers, _storage
from ._budget import SPACE_DEFAULT, check_reachable, resolve_budget
from ._job import Job, open_study, run_worker
from ._ui import Progress, StopOnSigint, quiet_optuna


def search(
    space,
    n_trials: int = 20,
    *,
    objective: str | None = None,
    sampler: str = "tpe",
    seed: int = 0,
    storage: str = _storage.DEFAULT_STORAGE,
    study_name: str | None = None,
    min_params: int | str | None = SPACE_DEFAULT,
    max_params: int | str | None = SPACE_DEFAULT,
    progress: bool = False,
    console=None,
    jobs: int = 1,
    heartbeat: int | None = _storage.DEFAULT_HEARTBEAT,
    grace: int | None = None,
    retries: int = _storage.DEFAULT_RETRIES,
    reconnect: float | None = None,
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
        orders by the rank sum). None: the space's ``default_objective``.
      sampler: ``"tpe"``, ``"random"``, ``"nsga2"``, ``"grid"`` or ``"qmc"``.
      seed: seeds the sampler, the initialization and the data.
      storage: an Optuna storage URL (``"memory"`` for none); SQLite in the working directory by
        default. Several processes need ``journal:PATH`` (one machine) or ``postgresql://...``.
      study_name: defaults to ``"{space}-{objective}"``.
      min_params, max_params: the parameter budget, counted on the network as scored:
        candidates outside it are infeasible (Optuna constraints), are not scored and do not
        count against ``n_trials``. :data:`SPACE_DEFAULT` (the default) takes the space's
        ``default_budget`` for that bound; None lifts it.
      progress: show a rich progress bar (trials, best so far, seconds per candidate).
      console: a ``rich.console.Console`` for the progress bar and messages.
      jobs: worker processes on this machine, each with its own JAX runtime; one per
        accelerator where there are several, the CPU cores split between them otherwise.
      heartbeat: seconds between heartbeats of a running trial (None: none). A trial without
        one for ``grace`` seconds is failed and retried by another worker.
      grace: seconds (default ``4 * heartbeat``).
      retries: a candidate whose scoring killed its worker is retried at most this many times;
        then it is a failed trial ("killed its worker N times") and is never scored again.
      reconnect: seconds a worker waits for a database server that went away (a restart) before
        it gives up with ``ValueError`` (default :data:`~ntknas.study._storage.RECONNECT_SECONDS`).
      **score_options: fields of :class:`ntknas.scoring.ScoreOptions` (batch, data, num_classes,
        input_shape, bn, float64, method).

    Returns:
      The ``optuna.Study``.

    Raises:
      ValueError: unknown space, proxy, direction or sampler; a bad budget, one no network of
        the space can meet (checked before the search starts against the space's
        ``size_extremes``, and after ``OUT_OF_BUDGET_LIMIT`` candidates in a row outside it);
        a bad or unreachable storage, or
        one that fails for good while the search runs (a full or read-only disk, a server down
        for longer than ``reconnect``); a study that exists with another space, objective or
        scoring options; ``jobs > 1`` on a storage other processes cannot share. A password in
        the storage URL is shown as ``***``.
      KeyboardInterrupt: on a second Ctrl-C (the study keeps every finished trial; the running
        one is failed and re-queued).
      Terminated: on SIGTERM (likewise).

    Example:
      >>> study = ntknas.search("nb201", n_trials=50, objective="ntk_cond:min,params:min")
      >>> ntknas.leaderboard(study).head()
    """
    from search_spaces import SearchSpace, get_space

    from ..scoring import ScoreOptions, Scorer

    space = space if isinstance(space, SearchSpace) else get_space(space)
    objective = space.default_objective if objective is None else objective
    targets = _objective.parse_objective(objective)
    if proxies.needs_blocks(targets) and space.param_block is None:
        raise ValueError(
            f"objective {objective!r}: space {space.name} has no parameter blocks, so no "
            "per-block proxies (blk_*); those are for the vit spaces"
        )
    options = ScoreOptions(seed=seed, **score_options)
    if not isinstance(n_trials, int) or isinstance(n_trials, bool) or n_trials < 0:
        raise ValueError(f"n_trials must be a non-negative int, got {n_trials!r}")
    budget = resolve_budget(space, min_params, max_params)
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ValueError(f"jobs must be a positive int, got {jobs!r}")
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise ValueError(f"retries must be a non-negative int, got {retries!r}")
    reconnect = _storage.RECONNECT_SECONDS if reconnect is None else reconnect
    if not isinstance(reconnect, (int, float)) or not reconnect >= 0 or reconnect == float("inf"):
        raise ValueError(f"reconnect must be a finite number of seconds >= 0, got {reconnect!r}")
    kind = _storage.storage_kind(storage)
    if jobs > 1 and kind in ("memory", "sqlite"):
        raise ValueError(
            f"jobs={jobs} needs a storage that several processes can write: {kind} is not for "
            "parallel writers; use journal:ntknas.log (one machine) or postgresql://..."
        )
    with quiet_optuna():
        _samplers.make_sampler(sampler, space, seed)  # fail on a bad sampler before any I/O
        _check_overrides(space, options)
    check_reachable(space, budget, Scorer(), options)
    objective_text = _objective.objective_str(targets)
    job = Job(
        space=space,
        objective=objective_text,
        options=options,
        sampler=sampler,
        seed=seed,
        storage=storage,
        study_name=study_name or default_study_name(space.name, objective),
        params_budget=budget,
        heartbeat=heartbeat,
        grace=grace,
        run_id=uuid.uuid4().hex,
        budget=n_trials,
        salted=jobs > 1 or kind not in ("memory", "sqlite"),
        retries=retries,
        reconnect=float(reconnect),
    )
    store, study = open_study(job)
    if jobs > 1:
        from ._processes import run_processes  # imports optuna: only for several processes

        run_processes(job, jobs, study, store, progress=progress, console=console)
        return study
    with StopOnSigint() as stopper, Progress(progress, n_trials, console) as bar:
        run_worker(job, store, study, stopper, index=0, bar=bar)
    return study


def default_study_name(space_name: str, objective: str | list[str] | tuple[str, ...]) -> str:
    """The study :func:`search` runs when given no ``study_name``: ``"{space}-{objective}"``, the
    objective written as :func:`objective_str` writes it (``ntk_cond`` becomes
    ``ntk_cond:min``)."""
    objective = _objective.objective_str(_objective.parse_objective(objective))
    return f"{space_name}-{objective}"


def _check_overrides(space, options) -> None:
    """Fails now, not in every trial, when ``options.overrides`` do not fit the space."""
    import optuna

    from ..scoring import apply_overrides

    if options.overrides:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        apply_overrides(space, space.suggest(study.ask()), options)
