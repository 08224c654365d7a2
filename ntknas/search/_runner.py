"""The study runner: ``ntknas.search`` with persistence, progress, Ctrl-C and failure handling."""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from typing import Any

from . import _objective, _samplers, _storage


def search(
    space,
    n_trials: int = 20,
    *,
    objective: str = "ntk_cond:min",
    sampler: str = "tpe",
    seed: int = 0,
    storage: str = _storage.DEFAULT_STORAGE,
    study_name: str | None = None,
    max_params: int | None = None,
    progress: bool = False,
    console=None,
    **score_options: Any,
):
    """Training-free architecture search: Optuna proposes, the full O×O NTK scores.

    Runs ``n_trials`` more trials in the study ``study_name`` (created, or resumed when it
    exists). Every proxy of every candidate is saved as trial user attributes, so the study can be
    read back with :func:`ntknas.leaderboard` or ``optuna-dashboard``. A candidate that fails
    (does not build, NaN kernel, out of memory) becomes a failed trial whose ``fail_reason``
    attribute says why, and the search goes on. The first Ctrl-C stops after the running
    candidate (finished trials are kept); a second one interrupts at once.

    Args:
      space: a space name (``ntknas spaces``) or a :class:`search_spaces.SearchSpace`.
      n_trials: trials to run in this call (earlier trials of a resumed study are kept).
      objective: proxies with directions, e.g. ``"ntk_cond:min"`` or ``"ntk_cond:min,params:min"``
        (multi-objective; use ``sampler="tpe"`` or ``"nsga2"``).
      sampler: ``"tpe"``, ``"random"``, ``"nsga2"``, ``"grid"`` or ``"qmc"``.
      seed: seeds the sampler, the initialization and the data.
      storage: an Optuna storage URL (``"memory"`` for none); SQLite in the working directory by
        default.
      study_name: defaults to ``"{space}-{objective}"``.
      max_params: candidates with more parameters are infeasible (Optuna constraint) and are not
        scored.
      progress: show a rich progress bar (trials, best so far, seconds per candidate).
      console: a ``rich.console.Console`` for the progress bar and messages.
      **score_options: fields of :class:`ntknas.scoring.ScoreOptions` (batch, data, num_classes,
        input_shape, bn, float64, method).

    Returns:
      The ``optuna.Study``.

    Raises:
      ValueError: unknown space, proxy, direction or sampler; a bad storage URL; a study that
        exists with another space, objective or scoring options.
      KeyboardInterrupt: on a second Ctrl-C (the study keeps every finished trial).

    Example:
      >>> study = ntknas.search("nb201", n_trials=50, objective="ntk_cond:min,params:min")
      >>> ntknas.leaderboard(study).head()
    """
    import optuna

    from search_spaces import SearchSpace, get_space

    from ..scoring import ScoreOptions, Scorer, options_dict

    space = space if isinstance(space, SearchSpace) else get_space(space)
    targets = _objective.parse_objective(objective)
    options = ScoreOptions(seed=seed, **score_options)
    if not isinstance(n_trials, int) or n_trials < 0:
        raise ValueError(f"n_trials must be a non-negative int, got {n_trials!r}")
    if max_params is not None and (not isinstance(max_params, int) or max_params < 1):
        raise ValueError(f"max_params must be a positive int, got {max_params!r}")
    with _quiet_optuna():
        _samplers.make_sampler(sampler, space, seed)  # fail on a bad sampler before any I/O
        _check_overrides(space, options)
    objective_text = _objective.objective_str(targets)
    study_name = study_name or f"{space.name}-{objective_text}"
    attrs = {"space": space.name, "objective": objective_text, "options": options_dict(options)}

    store = _storage.open_storage(storage)
    with _quiet_optuna():
        study = optuna.create_study(
            storage=store,
            study_name=study_name,
            directions=[t.direction for t in targets],
            load_if_exists=True,
        )
    _check_resume(study, attrs, targets)
    # A resumed study must not replay the first run's random draws: offset the seed by the
    # trials already there (deterministic for a given history).
    with _quiet_optuna():
        study.sampler = _samplers.make_sampler(sampler, space, seed + len(study.trials))
    for k, v in attrs.items():
        study.set_user_attr(k, v)

    messages: list[str] = []
    obj = _objective.Objective(
        space,
        targets,
        Scorer(),
        options,
        max_params,
        on_fail=lambda n, reason: messages.append(f"trial {n} failed: {reason}"),
    )
    with _quiet_optuna(), _StopOnSigint() as stopper, _Progress(progress, n_trials, console) as bar:

        def callback(study, trial):
            bar.update(study, trial, messages)
            if stopper.requested:
                study.stop()

        study.optimize(obj, n_trials=n_trials, catch=(Exception,), callbacks=[callback])
    return study


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

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping after the running candidate (Ctrl-C again to abort it)", flush=True)

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
