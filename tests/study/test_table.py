"""The leaderboard table fits a terminal: one line per candidate at 100 columns, on every space,
with the space's short description whole."""

import io
from types import SimpleNamespace

import optuna
import pandas as pd
import pytest
from rich.console import Console

from ntknas import proxies
from ntknas.study import render
from search_spaces import get_space, list_spaces

optuna.logging.set_verbosity(optuna.logging.WARNING)
WIDTH = 100


def _configs(space, n=12):
    """The space's extremes and ``n`` random draws (long and short descriptions alike)."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = [space.suggest(study.ask()) for _ in range(n)]
    return [*space.size_extremes(), *drawn]


def _frame(space, configs, rank_column):
    """Leaderboard-like rows whose numbers take the widest forms ``render`` writes."""
    rows = []
    for i, config in enumerate(configs):
        row = {name: -1.234567e-05 * (i + 1) for name in proxies.OBJECTIVE_PROXIES}
        row.update(
            rank=i + 1,
            description=space.describe(config),
            short=space.short(config),
            params=123_456_789,
            flops=9.87e12,
            seconds=1234.5678,
            method="structured",
            pareto=bool(i % 2),
        )
        row[rank_column] = 3.0 * len(configs)
        rows.append(row)
    return pd.DataFrame(rows)


def _lines(df, **kwargs) -> list[str]:
    out = io.StringIO()
    render(df, "table", console=Console(width=WIDTH, file=out, force_terminal=False), **kwargs)
    return out.getvalue().splitlines()


@pytest.mark.parametrize("name", list_spaces())
@pytest.mark.parametrize("kind", ["search", "score"])
def test_one_line_per_candidate_at_100_columns(name, kind):
    space = get_space(name)
    configs = _configs(space)
    if kind == "search":  # a study with the space's objective, a long name and a budget
        study = SimpleNamespace(
            study_name=f"{name}-{space.default_objective}",
            user_attrs={
                "objective": space.default_objective,
                "budget": {"min_params": 5_000_000, "max_params": 54_000_000, "space": name},
            },
        )
        df, kwargs = _frame(space, configs, "rank_sum"), dict(study=study)
    else:  # ntknas score --configs: the score column, ranked by the space's objective
        df = _frame(space, configs, "score").drop(columns="pareto")
        kwargs = dict(objective=space.default_objective)
    lines = _lines(df, **kwargs)
    one = _lines(df.head(1), **kwargs)
    assert len(lines) - len(one) == len(df) - 1  # each further row adds exactly one line
    assert all(len(line) <= WIDTH for line in lines)
    for i, short in enumerate(df["short"]):  # whole, on its row's line
        row = [line for line in lines if line.split()[:1] == [str(i + 1)]]
        assert len(row) == 1 and short in row[0], (short, lines)
    header = next(line for line in lines if "network" in line)
    for column in ("params", "seconds", "rank_sum" if kind == "search" else "score"):
        assert column in header
    text = "\n".join(lines)
    assert "123M" in text  # counts as 21.9M
    if "flops" in header:  # FLOPs are a column where the objective names them
        assert "9.87T" in text


def test_short_is_what_the_issue_shows_for_a_vit():
    space = get_space("vit-small")
    config = {
        "embed_dim": 384,
        "depth": 13,
        "heads": [6] * 10 + [7, 7, 7],
        "mlp_ratio": [4.0] * 9 + [3.0] * 4,
    }
    assert space.short(config) == "e384 d13 h6.2 m3.7"
