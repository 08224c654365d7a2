"""Studies: persistence and resume, reuse of scores, failures, constraints, samplers, Ctrl-C."""

import math

import optuna
import pytest

import ntknas
from ntknas import study as S

from ._toys import Flaky, InterruptAt, Tiny

SMALL = dict(batch=2)


def _url(tmp_path):
    return f"sqlite:///{tmp_path / 'study.db'}"


def test_search_persists_and_resumes_from_sqlite(tmp_path):
    url = _url(tmp_path)
    study = ntknas.search(Tiny(), 3, storage=url, sampler="random", seed=1, **SMALL)
    assert study.study_name == f"tiny-{Tiny.default_objective}"
    assert len(study.trials) == 3
    first = {t.number: dict(t.user_attrs) for t in study.trials}
    # a new call with the same arguments resumes the same study from the file
    again = ntknas.search(Tiny(), 4, storage=url, sampler="random", seed=1, **SMALL)
    trials = optuna.load_study(study_name=study.study_name, storage=url).trials
    assert len(trials) == 7 and len(again.trials) == 7
    for n, attrs in first.items():  # the earlier trials are kept untouched
        assert trials[n].user_attrs == attrs
    # the space has 4 configs: 7 trials re-propose some, whose scores are reused, not recomputed
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    by_config = {}
    for t in complete:
        by_config.setdefault(t.user_attrs["config"], []).append(t)
    assert len(by_config) <= 4 and len(complete) == 7
    for group in by_config.values():
        scored = [t for t in group if "reused_from" not in t.user_attrs]
        assert len(scored) == 1
        for t in group:
            assert t.values == scored[0].values
            if t is not scored[0]:
                assert t.user_attrs["reused_from"] == scored[0].number
    # every proxy is a user attribute
    attrs = complete[0].user_attrs
    for name in ntknas.proxies.PROXIES:
        assert name in attrs
    for name in ("method", "seconds", "batch", "data", "seed", "bn", "description", "config"):
        assert name in attrs
    parts = S.parse_objective(Tiny.default_objective)  # Optuna's values are the objective's parts
    assert complete[0].values == [attrs[t.proxy] for t in parts]


def test_leaderboard_ranks_distinct_configs(tmp_path):
    study = ntknas.search(Tiny(), 6, storage="memory", sampler="grid", **SMALL)
    df = ntknas.leaderboard(study)
    assert len(df) == 4  # the grid covers the whole 4-config space, each listed once
    assert list(df["rank"]) == [1, 2, 3, 4]
    assert list(df["rank_sum"]) == sorted(df["rank_sum"], reverse=True)  # the default objective
    by_cond = ntknas.leaderboard(study, sort="ntk_cond")
    assert list(by_cond["ntk_cond"]) == sorted(df["ntk_cond"])
    by_trace = ntknas.leaderboard(study, sort="ntk_trace", top=2)
    assert len(by_trace) == 2
    assert by_trace["ntk_trace"].iloc[0] == df["ntk_trace"].max()  # ntk_trace defaults to max
    assert (
        ntknas.leaderboard(study, sort="ntk_trace:min")["ntk_trace"].iloc[0]
        == df["ntk_trace"].min()
    )
    for col in ("description", "params", "method", "seconds", "config"):
        assert col in df.columns
    with pytest.raises(ValueError, match="unknown proxy"):
        ntknas.leaderboard(study, sort="accuracy")


def test_failing_candidates_become_failed_trials_and_the_search_goes_on():
    study = ntknas.search(Flaky(), 12, storage="memory", sampler="random", seed=0, **SMALL)
    states = {}
    for t in study.trials:
        mode = t.params["mode"]
        states.setdefault(mode, set()).add(t.state.name)
        if mode == "raise":
            assert t.state.name == "FAIL"
            assert "does not build" in t.user_attrs["fail_reason"]
        elif mode == "nan":
            assert t.state.name == "FAIL"
            assert "non-finite" in t.user_attrs["fail_reason"]
        else:
            assert t.state.name == "COMPLETE" and math.isfinite(t.values[0])
    assert set(states) == {"ok", "raise", "nan"}  # all three kinds were drawn, and survived
    assert len(study.trials) == 12
    assert all(r["config"] for _, r in ntknas.leaderboard(study).iterrows())


def test_max_params_is_a_constraint_and_infeasible_candidates_are_not_scored():
    # width 4/8, depth 1/2 on a 2x2x1 input with 3 classes: 35/67 (depth 1) and 55/139 params
    study = ntknas.search(Tiny(), 8, storage="memory", sampler="grid", max_params=50, **SMALL)
    for t in study.trials:
        params = t.user_attrs["params"]
        assert t.system_attrs["constraints:max_params"] == params - 50
        if params > 50:
            assert "infeasible" in t.user_attrs and "ntk_cond" not in t.user_attrs
    df = ntknas.leaderboard(study)
    assert len(df) >= 1 and (df["params"] <= 50).all()


def test_multi_objective_with_nsga2():
    study = ntknas.search(
        Tiny(), 5, objective="ntk_cond:min,params:min", sampler="nsga2", storage="memory", **SMALL
    )
    assert [d.name for d in study.directions] == ["MINIMIZE", "MINIMIZE"]
    assert study.study_name == "tiny-ntk_cond:min,params:min"
    df = ntknas.leaderboard(study)
    assert "pareto" in df.columns and df["pareto"].any()


def test_rank_sum_objective_searches_the_parts_and_ranks_by_their_rank_sum():
    from scipy.stats import rankdata

    spec = "rank(ntk_cond:min+ntk_trace:max+params:max)"
    study = ntknas.search(Tiny(), 6, objective=spec, sampler="random", storage="memory", **SMALL)
    assert [d.name for d in study.directions] == ["MINIMIZE", "MAXIMIZE", "MAXIMIZE"]
    assert study.study_name == f"tiny-{spec}"
    df = ntknas.leaderboard(study)
    expected = (
        rankdata(-df["ntk_cond"].to_numpy(float))
        + rankdata(df["ntk_trace"].to_numpy(float))
        + rankdata(df["params"].to_numpy(float))
    )
    assert len(df) >= 2 and df["rank_sum"].tolist() == expected.tolist()
    assert list(df["rank_sum"]) == sorted(df["rank_sum"], reverse=True)  # best first
    # the same order from a plain study, sorted afterwards
    plain = ntknas.leaderboard(study, sort="ntk_trace:max")
    assert "rank_sum" not in plain.columns
    resorted = ntknas.leaderboard(study, sort=spec)
    assert resorted["trial"].tolist() == df["trial"].tolist()


@pytest.mark.parametrize(
    "spec, match",
    [
        ("rank(ntk_cond:min+accuracy)", "unknown proxy"),
        ("params:min,rank(ntk_cond:min+ntk_trace:max)", "a rank sum is a whole objective"),
        ("rank(ntk_cond+ntk_cond:max)", "twice"),
    ],
)
def test_bad_rank_objectives(spec, match):
    with pytest.raises(ValueError, match=match):
        S.parse_objective(spec)


def test_objective_strings_round_trip():
    for spec in ("ntk_cond:min", "ntk_cond:min,params:min", "rank(ntk_cond:min+flops:max)"):
        assert S.objective_str(S.parse_objective(spec)) == spec
        assert S.default_study_name("tiny", spec) == f"tiny-{spec}"
    assert S.parse_objective(Tiny.default_objective)
    assert S.default_study_name("tiny", "ntk_cond") == "tiny-ntk_cond:min"  # direction written


@pytest.mark.parametrize("sampler", ["tpe", "qmc"])
def test_other_samplers_run(sampler):
    study = ntknas.search(Tiny(), 2, sampler=sampler, storage="memory", **SMALL)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]


def test_ctrl_c_stops_after_the_running_candidate_and_keeps_trials():
    study = ntknas.search(InterruptAt(1), 6, storage="memory", sampler="random", **SMALL)
    # SIGINT arrived while trial 1 was drawn: trial 1 finished, no further trial started
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(objective="ntk_cond:sideways"), "direction"),
        (dict(objective="accuracy"), "unknown proxy"),
        (dict(sampler="annealing"), "unknown sampler"),
        (dict(storage="not a url"), "not a URL"),
        (dict(storage="sqlite:////no/such/dir/x.db"), "does not exist"),
        (dict(max_params=0), "max_params"),
        (dict(batch=-1), "batch"),
    ],
)
def test_bad_arguments_are_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ntknas.search(Tiny(), 1, **{"storage": "memory", **kwargs})


def test_resuming_with_other_scoring_options_is_refused(tmp_path):
    url = _url(tmp_path)
    ntknas.search(Tiny(), 1, storage=url, batch=2)
    with pytest.raises(ValueError, match="batch=2"):
        ntknas.search(Tiny(), 1, storage=url, batch=3)


def test_grid_over_a_continuous_or_huge_space_is_refused():
    from search_spaces import get_space

    with pytest.raises(ValueError, match="points"):
        S.grid_search_space(get_space("vit-small"))


def test_search_is_a_plain_function():
    import inspect

    assert inspect.isfunction(ntknas.search) and ntknas.search is S.search
    assert ntknas.leaderboard is S.leaderboard
