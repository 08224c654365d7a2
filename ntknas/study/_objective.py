"""What a study optimizes and the Optuna objective of a trial.

An objective is one proxy (``ntk_cond:min``), several (``ntk_cond:min,params:min``: a Pareto
search), or a rank sum (``rank(ntk_cond:min+ntk_trace:max+flops:max)``): TE-NAS's aggregation, in
which every architecture is ranked by each proxy in its direction and the ranks are added. A rank
is relative to the other architectures, so Optuna searches the parts' Pareto front (the rank sum's
best is always on it) and the leaderboard orders the study's architectures by their rank sum.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from .. import proxies
from ._budget import Budget

_WAIT_SECONDS = 0.5  # polling for a duplicate that another worker is scoring


@dataclass(frozen=True)
class Target(proxies.Term):
    """One objective: a proxy and the direction it is optimized in."""

    rank: bool = False  # a part of a rank-sum objective

    @property
    def worst(self) -> float:
        return math.inf if self.direction == "minimize" else -math.inf


def parse_objective(spec: str | list[str] | tuple[str, ...]) -> tuple[Target, ...]:
    """``"ntk_cond"``, ``"ntk_trace:max"``, ``"ntk_cond:min,params:min"`` or
    ``"rank(ntk_cond:min+ntk_trace:max)"`` -> targets (a rank sum's have ``rank=True``).

    A proxy without a direction takes the one earlier work uses (see ``ntknas.proxies.PROXIES``).

    Raises:
      ValueError: an unknown proxy or direction (the message lists the allowed ones), an empty
        spec, the same proxy twice, or a rank sum mixed with other objectives.
    """
    terms, rank = proxies.parse_terms(spec)
    return tuple(Target(t.proxy, t.direction, rank) for t in terms)


def objective_str(targets: tuple[Target, ...]) -> str:
    if targets and targets[0].rank:
        return "rank(" + "+".join(map(str, targets)) + ")"
    return ",".join(map(str, targets))


def rank_sum(values: dict[str, list[float]], targets: tuple[Target, ...]):
    """TE-NAS's aggregation over a set of architectures: Σ_parts rank(sign · value), best =
    highest; NaN where a part is missing (``values``: proxy -> one value per architecture)."""
    return proxies.rank_sum_of(values, targets)


class CandidateFailed(RuntimeError):
    """A candidate could not be scored; the message is the trial's ``fail_reason``."""


class Objective:
    """The Optuna objective: suggest a config, score it (or reuse its scores), return targets.

    Every score lands in the trial's user attributes, the config as canonical JSON under
    ``config``. A config already scored in the study is not scored again: its attributes are copied
    and ``reused_from`` names the trial that scored it.

    Args:
      space: the :class:`search_spaces.SearchSpace`.
      targets: from :func:`parse_objective`.
      scorer: a :class:`ntknas.scoring.Scorer`.
      options: the :class:`ntknas.scoring.ScoreOptions` of every trial.
      budget: a :class:`~ntknas.study._budget.Budget`; candidates outside it are infeasible
        (``trial.set_constraint``), are not scored and get the worst value of each target.
      on_fail: called with (trial number, reason) when a candidate fails.

    Attributes:
      misses: candidates drawn in a row outside the budget (a run stops at
        :data:`~ntknas.study._budget.OUT_OF_BUDGET_LIMIT`).
    """

    def __init__(self, space, targets, scorer, options, budget=None, on_fail=None):
        self.space, self.targets, self.scorer, self.options = space, targets, scorer, options
        self.budget = budget or Budget()
        self.on_fail = on_fail
        self.misses = 0
        self.blocks = proxies.needs_blocks(
            targets
        )  # per-block kernels, where the objective reads them
        self.on_wait = None  # called while waiting on a duplicate (a worker fails dead peers)
        self._seen: dict[str, tuple[int, dict[str, Any]]] = {}

    def _lookup(self, trial, key: str):
        """Scores of ``key`` from this study, read from the storage now (other workers may have
        scored it since the search began); if an earlier trial is scoring it right now, wait for
        that one rather than compute the same kernel twice."""
        from optuna.trial import TrialState

        while True:
            if key in self._seen:
                return self._seen[key]
            running = False
            for t in trial.study.get_trials(
                deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)
            ):
                if t.user_attrs.get("config") != key or t.number == trial.number:
                    continue
                if t.state == TrialState.COMPLETE and "ntk_cond" in t.user_attrs:
                    self._seen[key] = (t.user_attrs.get("reused_from", t.number), t.user_attrs)
                    return self._seen[key]
                # Only wait on an earlier trial: two duplicates never wait on each other.
                running |= t.state == TrialState.RUNNING and t.number < trial.number
            if not running:
                return None
            if self.on_wait is not None:
                self.on_wait()  # a dead peer's trial is failed after its grace period
            time.sleep(_WAIT_SECONDS)

    def __call__(self, trial) -> float | list[float]:
        from ..scoring import apply_overrides, canonical_json

        try:
            config = apply_overrides(self.space, self.space.suggest(trial), self.options)
            key = canonical_json(config)
            trial.set_user_attr("config", key)
            trial.set_user_attr("description", self.space.describe(config))
            if self.budget.bounded:
                n = self.scorer.count_params(self.space, config, self.options)
                for name, value in self.budget.constraints(n).items():
                    trial.set_constraint(name, value)
                why = self.budget.violation(n)
                if why is not None:
                    self.misses += 1
                    trial.set_user_attr("params", n)
                    trial.set_user_attr("infeasible", why)
                    return self._values({"params": n}, fill_worst=True)
                self.misses = 0
            seen = self._lookup(trial, key)
            if seen is not None:
                number, attrs = seen
                scores = {k: v for k, v in attrs.items() if k not in ("reused_from",)}
                scores["reused_from"] = number
            else:
                score = self.scorer.score(self.space, config, self.options, blocks=self.blocks)
                scores = score.as_dict()
                scores.pop("config"), scores.pop("space")
            for k, v in scores.items():
                trial.set_user_attr(k, v)
            values = self._values(scores)
            if seen is None:
                self._seen[key] = (trial.number, scores)
            return values
        except Exception as e:
            reason = _one_line(e)
            trial.set_user_attr("fail_reason", reason)
            if self.on_fail is not None:
                self.on_fail(trial.number, reason)
            raise CandidateFailed(reason) from e

    def _values(self, scores: dict, fill_worst: bool = False) -> float | list[float]:
        values = []
        for t in self.targets:
            v = scores.get(t.proxy)
            if v is None and fill_worst:
                v = t.worst
            if v is None or (isinstance(v, float) and math.isnan(v)):
                raise CandidateFailed(f"proxy {t.proxy} is {v} (NaN or missing)")
            values.append(float(v))
        return values[0] if len(values) == 1 else values


def _one_line(e: BaseException) -> str:
    msg = " ".join(str(e).split())
    if len(msg) > 300:
        msg = msg[:297] + "..."
    name = type(e).__name__
    if "RESOURCE_EXHAUSTED" in msg or isinstance(e, MemoryError):
        name = "OutOfMemory"
    return f"{name}: {msg}" if msg else name
