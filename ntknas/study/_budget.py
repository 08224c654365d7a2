"""A search's parameter budget: the bounds in force, where each came from, and the check that
some network of the space can meet them.

Bounds count the parameters of the network as scored (the leaderboard's ``params``: at the
scoring input shape and class count). Each bound is the user's, or the space's
``default_budget`` when the user gives none; None lifts it. A candidate outside the budget is not
scored: its trial carries Optuna constraints (``min_params``, ``max_params``; positive means
violated), so constrained samplers learn to stay inside, and it does not count against the run's
trials.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SPACE_DEFAULT = "default"  # a bound left to the space's default_budget
# A run that draws this many candidates in a row outside the budget stops: no config (or too few
# for the sampler to find) meets it.
OUT_OF_BUDGET_LIMIT = 300
_CONSTRAINT_PREFIX = "constraints:"  # Optuna's system attribute of trial.set_constraint


@dataclass(frozen=True)
class Budget:
    """Parameter bounds (None: open) and where each came from (``"user"`` or ``"space"``)."""

    low: int | None = None
    high: int | None = None
    low_from: str = "user"
    high_from: str = "user"
    space: str = ""

    @property
    def bounded(self) -> bool:
        return self.low is not None or self.high is not None

    def constraints(self, params: int) -> dict[str, float]:
        """Optuna constraint values of a candidate with ``params`` (positive: violated)."""
        out = {}
        if self.low is not None:
            out["min_params"] = float(self.low - params)
        if self.high is not None:
            out["max_params"] = float(params - self.high)
        return out

    def violation(self, params: int) -> str | None:
        """Why ``params`` is outside the budget, or None when inside."""
        if self.low is not None and params < self.low:
            return f"params {params:,} < min_params {self.low:,}"
        if self.high is not None and params > self.high:
            return f"params {params:,} > max_params {self.high:,}"
        return None

    def range_text(self) -> str:
        """``5M..6M params``, ``at most 6M params``, or ``none``."""
        if self.low is not None and self.high is not None:
            return f"{count_text(self.low)}..{count_text(self.high)} params"
        if self.low is not None:
            return f"at least {count_text(self.low)} params"
        if self.high is not None:
            return f"at most {count_text(self.high)} params"
        return "none"

    def __str__(self) -> str:
        """The range and where it came from, e.g. ``5M..6M params (vit-tiny default)``."""
        default = f"{self.space} default" if self.space else "space default"
        sides = [("min", self.low, self.low_from), ("max", self.high, self.high_from)]
        sides = [(side, src) for side, value, src in sides if value is not None] or [
            (side, src) for side, _, src in sides
        ]  # no bound: where the open ones came from
        sources = {src for _, src in sides}
        if len(sources) == 1:
            origin = default if sources == {"space"} else "user"
        else:
            origin = ", ".join(f"{side} {default if s == 'space' else 'user'}" for side, s in sides)
        return f"{self.range_text()} ({origin})"

    def as_dict(self) -> dict[str, Any]:
        """JSON-able, as stored with the study (``budget``)."""
        return {
            "min_params": self.low,
            "max_params": self.high,
            "min_from": self.low_from,
            "max_from": self.high_from,
            "space": self.space,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Budget:
        return cls(
            d.get("min_params"),
            d.get("max_params"),
            d.get("min_from", "user"),
            d.get("max_from", "user"),
            d.get("space", ""),
        )


def resolve_budget(space, min_params: Any = SPACE_DEFAULT, max_params: Any = SPACE_DEFAULT):
    """The :class:`Budget` of a search: each bound the user's, or the space's default.

    Args:
      space: the :class:`search_spaces.SearchSpace` (its ``default_budget``).
      min_params, max_params: a positive int, None (no bound), or :data:`SPACE_DEFAULT`.

    Raises:
      ValueError: a bound that is not one of those, or ``min_params > max_params``.
    """
    bounds = []
    for name, value, default in zip(
        ("min_params", "max_params"), (min_params, max_params), space.default_budget, strict=True
    ):
        if isinstance(value, str) and value == SPACE_DEFAULT:
            bounds.append((default, "space"))
            continue
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 1
        ):
            raise ValueError(
                f"{name} must be a positive int, None (no bound) or {SPACE_DEFAULT!r} "
                f"(the space's), got {value!r}"
            )
        bounds.append((value, "user"))
    (low, low_from), (high, high_from) = bounds
    budget = Budget(low, high, low_from, high_from, space.name)
    if low is not None and high is not None and low > high:
        raise ValueError(
            f"min_params {low:,} ({_origin(low_from, space)}) > max_params {high:,} "
            f"({_origin(high_from, space)}): no network fits; lift a bound with none"
        )
    return budget


def check_reachable(space, budget: Budget, scorer, options) -> None:
    """Fails before a search starts when no network of the space can meet ``budget``.

    The space's ``size_extremes`` hold its fewest and its most parameters at the scoring input
    and classes; a budget beyond them is refused. (One that falls between two networks' counts
    is found out while sampling: :data:`OUT_OF_BUDGET_LIMIT`.)

    Raises:
      ValueError: one line with the budget and the space's range at these settings.
    """
    from ..scoring import apply_overrides

    extremes = space.size_extremes()
    if not budget.bounded or not extremes:
        return
    counts = [
        scorer.count_params(space, apply_overrides(space, c, options), options) for c in extremes
    ]
    least, most = min(counts), max(counts)
    if (budget.high is not None and budget.high < least) or (
        budget.low is not None and budget.low > most
    ):
        num_classes, shape = options.resolve_io(space)
        raise ValueError(
            f"no {space.name} network has {budget}: at {'x'.join(map(str, shape))} input and "
            f"{num_classes} logits they have {least:,}..{most:,} params; give other bounds "
            "(--min-params/--max-params) or lift one with none"
        )


def out_of_budget(trial) -> bool:
    """Whether a trial (Optuna's, frozen or live) violates a constraint of the study."""
    attrs = trial.system_attrs
    return any(v > 0 for k, v in attrs.items() if k.startswith(_CONSTRAINT_PREFIX))


def count_text(n: float | None) -> str:
    """A count in 4 characters or so: ``21.9M``, ``5M``, ``812k``, ``1.2G``, ``950``."""
    if n is None:
        return ""
    for div, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.3g}"


def _origin(source: str, space) -> str:
    return f"{space.name} default" if source == "space" else "user"
