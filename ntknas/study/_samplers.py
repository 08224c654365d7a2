"""Optuna samplers by the names users type (``--sampler tpe|random|nsga2|grid|qmc``)."""

from __future__ import annotations

import math
from collections.abc import Callable

_SAMPLERS: dict[str, Callable] = {}
_GRID_LIMIT = 1_000_000


def _sampler(name: str):
    def deco(fn):
        _SAMPLERS[name] = fn
        return fn

    return deco


def sampler_names() -> list[str]:
    return list(_SAMPLERS)


def make_sampler(name: str, space, seed: int):
    """The Optuna sampler ``name``, seeded, for ``space``.

    Raises:
      ValueError: unknown name, or a grid over a space that is not discrete or too large.
    """
    if name not in _SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(_SAMPLERS)}")
    return _SAMPLERS[name](space, seed)


@_sampler("tpe")
def _tpe(space, seed):
    import optuna

    # multivariate TPE models the joint choices (depth with per-layer widths) far better; the
    # constant liar counts trials running in other workers as bad, so parallel workers spread out
    # instead of proposing the same point (one process: no other trial runs, nothing changes).
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)


@_sampler("random")
def _random(space, seed):
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


@_sampler("nsga2")
def _nsga2(space, seed):
    import optuna

    return optuna.samplers.NSGAIISampler(seed=seed)


@_sampler("qmc")
def _qmc(space, seed):
    import warnings

    import optuna

    with warnings.catch_warnings():  # "experimental": known, and not the user's to act on
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.QMCSampler(
            seed=seed,
            scramble=True,
            warn_independent_sampling=False,
            warn_asynchronous_seeding=False,
        )


@_sampler("grid")
def _grid(space, seed):
    import optuna

    class _Grid(optuna.samplers.GridSampler):
        # Optuna's grid calls study.stop() when the grid is covered, which only works inside
        # study.optimize; our workers ask and tell themselves and check is_exhausted instead.
        def after_trial(self, study, trial, state, values):
            pass

    return _Grid(grid_search_space(space), seed=seed)


def probe_distributions(space, probes: int = 512) -> dict:
    """The union of the Optuna distributions ``space.suggest`` uses over ``probes`` random draws."""
    import optuna

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    dists: dict = {}
    for _ in range(probes):
        trial = study.ask()
        space.suggest(trial)
        dists.update(trial.distributions)
        study.tell(trial, 0.0)
    return dists


def grid_search_space(space, probes: int = 512) -> dict[str, list]:
    """Every parameter ``space.suggest`` can draw, with all its values, for Optuna's GridSampler.

    Spaces are define-by-run, so the parameters are found by drawing ``probes`` random trials and
    taking the union; conditional parameters (a layer that exists only at some depths) simply
    take a value that the trial does not use, and the repeated configs cost nothing because
    scores are reused within a study.

    Raises:
      ValueError: a continuous parameter, or more than a million grid points.
    """
    import optuna

    dists = probe_distributions(space, probes)
    grid = {}
    for name, d in sorted(dists.items()):
        if isinstance(d, optuna.distributions.CategoricalDistribution):
            grid[name] = list(d.choices)
        elif isinstance(d, optuna.distributions.IntDistribution) and not d.log:
            grid[name] = list(range(d.low, d.high + 1, d.step))
        else:
            raise ValueError(f"--sampler grid needs discrete parameters; {name} is {d}")
    points = math.prod(len(v) for v in grid.values())
    if points > _GRID_LIMIT:
        raise ValueError(
            f"a grid over space {space.name!r} has {points:.3g} points (limit {_GRID_LIMIT}); "
            "use --sampler tpe or random"
        )
    return grid
