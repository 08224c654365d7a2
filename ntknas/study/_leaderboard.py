"""The leaderboard: one row per scored architecture of a study, ranked, as a pandas DataFrame."""

from __future__ import annotations

import json
import math
import numbers

import numpy as np

from .. import proxies
from ._budget import Budget, count_text, out_of_budget
from ._objective import parse_objective, rank_sum

# Columns in the order they are listed (CSV, JSON). The rich table fits 100 columns: rank, the
# space's short description, params, the objective's rank sum and proxies (TABLE_PROXIES when
# there is no objective), seconds.
_META = ["method", "path", "seconds", "compile_seconds", "init_seconds", "kernel_seconds"]
_META += ["batch", "data", "seed", "bn", "input_shape", "dtype"]
TABLE_PROXIES = ["ntk_cond", "ntk_trace", "flops"]
_COUNTS = ("params", "flops")  # shown as 21.9M in the table


def leaderboard(study, top: int | None = None, sort: str | None = None):
    """The scored architectures of a study, best first.

    One row per distinct config (re-proposed configs are listed once), from completed, feasible
    trials. Failed and infeasible trials are left out.

    Args:
      study: an ``optuna.Study`` (from :func:`ntknas.search` or ``optuna.load_study``).
      top: keep the best ``top`` rows.
      sort: a proxy, optionally with a direction (``"ntk_trace:max"``), or a rank sum
        (``"rank(ntk_cond:min+ntk_trace:max)"``); defaults to the study's objective (its first
        proxy, or its rank sum).

    Returns:
      A ``pandas.DataFrame`` with columns ``rank``, ``trial``, ``description``, ``short`` (the
      space's :meth:`~search_spaces.SearchSpace.short`, the table's cell), every proxy of
      :data:`ntknas.proxies.PROXIES` (and the per-block ``blk_*`` where the study computed
      them), ``method``, ``path`` (which scored it: ``own`` or
      ``shared``), ``seconds`` and its parts (``compile_seconds``, ``init_seconds``,
      ``kernel_seconds``), the scoring options, and ``config``
      (canonical JSON). Multi-objective studies also get ``pareto`` (on the Pareto front); a
      rank-sum objective or sort adds ``rank_sum`` (ranks among all the rows listed, before
      ``top`` is applied; higher is better) and orders by it.

    Raises:
      ValueError: an unknown sort proxy or a bad ``top``.
    """
    import pandas as pd

    if top is not None and (not isinstance(top, int) or top < 1):
        raise ValueError(f"top must be a positive int, got {top!r}")
    if sort is None:
        objective = study.user_attrs.get("objective")
        targets = parse_objective(objective) if objective else ()
    else:
        targets = parse_objective(sort)
    target = targets[0] if targets else None
    pareto = set()
    if len(study.directions) > 1:
        pareto = {t.number for t in study.best_trials}
    rows, seen, blocks = [], set(), []
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        if t.state.name != "COMPLETE" or "ntk_cond" not in attrs or out_of_budget(t):
            continue
        if attrs.get("config") in seen:
            continue
        seen.add(attrs.get("config"))
        row = {"trial": t.number, "description": attrs.get("description", "")}
        row["short"] = attrs.get("short", row["description"])  # studies before `short`
        row.update({name: attrs.get(name) for name in proxies.PROXIES})
        # the per-block proxies, where the study's objective had them computed
        row.update({name: attrs[name] for name in proxies.BLOCK_PROXIES if name in attrs})
        blocks = blocks or [name for name in proxies.BLOCK_PROXIES if name in attrs]
        row.update({name: attrs.get(name) for name in _META})
        if pareto:
            row["pareto"] = t.number in pareto
        row["config"] = attrs.get("config")
        rows.append(row)
    columns = ["trial", "description", "short", *proxies.PROXIES, *blocks, *_META]
    columns += ["pareto"] if pareto else []
    df = pd.DataFrame(rows, columns=[*columns, "config"])
    if target is not None:
        if target.rank:  # ranks among the listed architectures
            df["rank_sum"] = rank_sum({t.proxy: df[t.proxy] for t in targets}, targets)
            key = -df["rank_sum"]
        else:
            key = -target.sign * df[target.proxy].astype(float)
        df = df.assign(_key=key.fillna(math.inf)).sort_values(["_key", "trial"], kind="stable")
        df = df.drop(columns="_key")
    df.insert(0, "rank", range(1, len(df) + 1))
    df = df.reset_index(drop=True)
    return df.head(top) if top else df


def render(df, fmt: str = "table", study=None, console=None, objective=None) -> str | None:
    """Writes ``df`` as a rich table (to ``console``) or returns it as CSV or JSON text.

    The table has one line per row on a 100-column terminal: rank, the short description,
    params, the rank sum (or ``score``) and the proxies of the objective (the study's, else
    ``objective``, else :data:`TABLE_PROXIES`), seconds; the title names a study and its
    parameter budget. CSV and JSON hold every column, the full description and config included.

    Raises:
      ValueError: an unknown format.
    """
    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "json":
        records = df.to_dict(orient="records")
        for r in records:
            if isinstance(r.get("config"), str):
                r["config"] = json.loads(r["config"])
        return json.dumps(records, indent=1, default=_jsonable, allow_nan=True)
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r}; choose table, csv or json")
    from rich import box
    from rich.console import Console
    from rich.table import Table

    if study is not None and study.user_attrs.get("objective"):
        objective = study.user_attrs["objective"]
    named = [t.proxy for t in parse_objective(objective)] if objective else TABLE_PROXIES
    ranks = [c for c in ("rank_sum", "score") if c in df.columns]
    cols = ["rank", "short", "params", *ranks, *[p for p in named if p != "params"], "seconds"]
    cols += ["pareto"] if "pareto" in df.columns else []
    title = None
    if study is not None:
        title = f"study {study.study_name}"
        if "budget" in study.user_attrs:  # the budget in force and where it came from
            title += f"\nbudget: {Budget.from_dict(study.user_attrs['budget'])}"
    table = Table(
        title=title,
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    for c in cols:
        table.add_column(
            _header(c),
            justify="left" if c == "short" else "right",
            no_wrap=True,  # one line per candidate: a column too wide is cut, never wrapped
            overflow="ellipsis",
            # the network is never cut: where the row is too wide, other columns give way
            min_width=int(df["short"].astype(str).str.len().max()) if c == "short" else None,
        )
    for _, row in df.iterrows():
        table.add_row(*[_cell(row.get(c), c) for c in cols])
    (console or Console()).print(table)
    return None


def _header(column: str) -> str:
    """A column's title in the table: ``network`` for the short description, a per-block proxy
    without its ``blk_`` prefix (``head_share``); CSV and JSON keep the full names."""
    if column == "short":
        return "network"
    return column.removeprefix("blk_") if column in proxies.BLOCK_PROXIES else column


def _cell(v, column: str = "") -> str:
    if column in _COUNTS and isinstance(v, numbers.Real) and math.isfinite(v):
        return count_text(v)
    if column == "seconds" and isinstance(v, float) and math.isfinite(v):
        return f"{v:.2f}" if v < 100 else f"{v:.0f}"
    if column == "pareto" and isinstance(v, (bool, np.bool_)):
        return "yes" if v else ""
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"
    return "" if v is None else str(v)


def _jsonable(v):
    if hasattr(v, "item"):
        return v.item()
    return str(v)
