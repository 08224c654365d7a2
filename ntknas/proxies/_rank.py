"""Proxies read in a direction, and TE-NAS's rank sum over several of them.

One syntax everywhere: ``name`` or ``name:min``/``name:max`` for one proxy, and
``rank(a:max+b:min+...)`` for a rank sum, in which every architecture is ranked by each proxy in
its direction and the ranks are added (best = highest). A name without a direction takes the
registry's: :attr:`Proxy.direction` for a search, :attr:`Proxy.report_direction` for a report.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ._registry import OBJECTIVE_PROXIES, Proxy, direction_sign

_DIRECTIONS = {"min": "minimize", "minimize": "minimize", "max": "maximize", "maximize": "maximize"}


@dataclass(frozen=True)
class Term:
    """A proxy and the direction it is read in."""

    proxy: str
    direction: str  # "minimize" | "maximize"

    def __str__(self) -> str:
        return f"{self.proxy}:{self.direction[:3]}"

    @property
    def sign(self) -> int:
        return direction_sign(self.direction)


def parse_terms(
    spec: str | list[str] | tuple[str, ...],
    *,
    registry: Mapping[str, Proxy] = OBJECTIVE_PROXIES,
    report: bool = False,
) -> tuple[tuple[Term, ...], bool]:
    """``"ntk_cond"``, ``"ntk_trace:max"``, ``"ntk_cond:min,params:min"`` or
    ``"rank(ntk_cond:min+ntk_trace:max)"`` -> (terms, whether they form a rank sum).

    Args:
      spec: the text, or a list of ``name[:direction]`` parts.
      registry: the proxies that may be named (default: what a search computes, the per-block
        proxies included).
      report: a name without a direction takes its ``report_direction`` (compare's reading)
        instead of its ``direction`` (a search's).

    Raises:
      ValueError: an unknown proxy or direction (the message lists the allowed ones), an empty
        spec, the same proxy twice, or a rank sum mixed with other objectives.
    """
    rank = False
    if isinstance(spec, str):
        text = spec.strip()
        if text.startswith("rank(") and text.endswith(")"):
            rank, parts = True, text[len("rank(") : -1].split("+")
        elif "rank(" in text:
            raise ValueError(
                f"objective {spec!r}: a rank sum is a whole objective, "
                "e.g. rank(ntk_cond:min+ntk_trace:max)"
            )
        else:
            parts = text.split(",")
    else:
        parts = list(spec)
    terms = []
    for part in parts:
        name, _, direction = part.strip().partition(":")
        if name not in registry:
            raise ValueError(
                f"unknown proxy {name!r} in objective {spec!r}; choose from {', '.join(registry)}"
            )
        if direction:
            if direction not in _DIRECTIONS:
                raise ValueError(
                    f"unknown direction {direction!r} for {name}; use min or max (e.g. {name}:min)"
                )
            direction = _DIRECTIONS[direction]
        else:
            p = registry[name]
            direction = (p.report_direction or p.direction) if report else p.direction
        terms.append(Term(name, direction))
    if not terms:
        raise ValueError("the objective names no proxy")
    names = [t.proxy for t in terms]
    if len(set(names)) != len(names):
        raise ValueError(f"objective {spec!r} names a proxy twice")
    return tuple(terms), rank


def rank_sum(columns: Mapping[str, np.ndarray], signs: Mapping[str, int]) -> np.ndarray:
    """TE-NAS-style aggregation: the sum over proxies of each one's rank, best = highest.

    Args:
      columns: proxy name -> values (one per architecture).
      signs: proxy name -> +1 if higher is better, -1 if lower is better.

    Returns:
      (n,) float: Σ_p rank(sign_p · value_p); NaN where any proxy is NaN.
    """
    from scipy.stats import rankdata

    total = None
    for name, values in columns.items():
        v = signs[name] * np.asarray(values, dtype=np.float64)
        r = np.full(v.shape, np.nan)
        ok = ~np.isnan(v)
        r[ok] = rankdata(v[ok])  # ranked among the architectures that have a value
        total = r if total is None else total + r
    return total


def rank_sum_of(columns: Mapping[str, np.ndarray], terms: tuple[Term, ...]) -> np.ndarray:
    """:func:`rank_sum` of ``terms``, each ranked in its own direction."""
    cols = {t.proxy: np.asarray(columns[t.proxy], dtype=np.float64) for t in terms}
    return rank_sum(cols, {t.proxy: t.sign for t in terms})
