"""One run of a search, as each of its worker processes sees it: the :class:`Job`, the study it
opens (:func:`open_study`) and the trial loop of one worker (:func:`run_worker`)."""

from __future__ import annotations

import dataclasses
from typing import Any

from . import _objective, _samplers, _storage
from ._budget import Budget, out_of_budget
from ._ui import quiet_optuna


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
    params_budget: Budget  # parameter bounds of the candidates (``budget``: trials of the run)
    heartbeat: int | None
    grace: int | None
    run_id: str
    budget: int
    salted: bool  # several workers: give each its own sampler seed
    retries: int = _storage.DEFAULT_RETRIES  # of a candidate that killed its worker
    reconnect: float = _storage.RECONNECT_SECONDS  # waiting for a database server that went away


def open_study(job: Job):
    """Opens (or creates) the study of ``job`` and checks that it is the same search.

    Returns:
      (storage, study).

    Raises:
      ValueError: a bad or failing storage (one line, the URL masked), or a study of that name
        that was run with other settings.
    """
    import optuna

    from ..scoring import options_dict

    store = _storage.open_storage(job.storage, heartbeat=job.heartbeat, grace=job.grace)
    targets = _objective.parse_objective(job.objective)
    attrs = {
        "space": job.space.name,
        "objective": job.objective,
        "options": options_dict(job.options),
        "budget": job.params_budget.as_dict(),
    }
    with quiet_optuna(), _storage.storage_errors(job.storage):
        try:  # loaded first: a journal records every create_study, even one that loads
            study = optuna.load_study(study_name=job.study_name, storage=store)
        except KeyError:
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


def run_worker(job: Job, store, study, stopper, index: int = 0, bar=None) -> int:
    """One worker: its sampler, its scorer, trials until the run's budget is met."""
    from ..scoring import Scorer
    from ._workers import PoisonGuard, Worker, sampler_seed  # imports optuna

    salt = f"{job.run_id}:{index}" if job.salted else ""
    with quiet_optuna(), _storage.storage_errors(job.storage):
        seed = sampler_seed(job.seed, len(study.get_trials(deepcopy=False)), salt)
        study.sampler = _samplers.make_sampler(job.sampler, job.space, seed)
        study_id = store.get_study_id_from_name(study.study_name)
    messages: list[str] = []
    obj = _objective.Objective(
        job.space,
        _objective.parse_objective(job.objective),
        PoisonGuard(Scorer(shared_graphs=True), store, study_id),
        job.options,
        job.params_budget,
        on_fail=lambda n, reason: messages.append(f"trial {n} failed: {reason}"),
    )

    def on_trial(study, trial):
        if bar is not None and not out_of_budget(trial):  # not one of the run's trials
            bar.update(study, trial, messages)
        else:
            messages.clear()

    worker = Worker(
        study,
        store,
        job.storage,
        obj,
        job.run_id,
        job.budget,
        stopper,
        on_trial,
        retries=job.retries,
        reconnect=job.reconnect,
    )
    with quiet_optuna():
        return worker.run()


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
    bounds = ("min_params", "max_params")
    if "budget" in old and any(old["budget"].get(k) != attrs["budget"][k] for k in bounds):
        was, now = Budget.from_dict(old["budget"]), Budget.from_dict(attrs["budget"])
        raise ValueError(
            f"study {study.study_name!r} was run with a budget of {was.range_text()}, not "
            f"{now.range_text()}; use the same bounds or another --study name"
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
