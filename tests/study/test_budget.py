"""Parameter budgets: each bound the user's or the space's default, ``none`` lifting it; a search
spends its trials inside the budget; a budget no network meets is one ValueError."""

import random

import pytest

import ntknas
from ntknas.scoring import ScoreOptions, Scorer
from ntknas.study import Budget, _budget, leaderboard, resolve_budget
from search_spaces import get_space, list_spaces
from tests.search._toys import Tiny

# Tiny's four networks on its 2x2x1 input with 3 classes have 35, 67 (depth 1) and 55, 139
# (depth 2) parameters: a budget of 30..60 holds two of them.


class Budgeted(Tiny):
    name = "budgeted"
    default_budget = (30, 60)


def _scored_params(study):
    return [t.user_attrs["params"] for t in study.trials if "ntk_cond" in t.user_attrs]


def test_a_search_spends_its_trials_inside_the_space_default_budget():
    study = ntknas.search(Budgeted(), 3, storage="memory", sampler="random", batch=2)
    scored = _scored_params(study)
    assert len(scored) == 3 and set(scored) <= {35, 55}  # three trials, all inside
    outside = [t for t in study.trials if _budget.out_of_budget(t)]
    assert outside and all("ntk_cond" not in t.user_attrs for t in outside)
    assert all(t.user_attrs["params"] in (67, 139) for t in outside)
    assert study.user_attrs["budget"] == {
        "min_params": 30,
        "max_params": 60,
        "min_from": "space",
        "max_from": "space",
        "space": "budgeted",
    }
    assert set(leaderboard(study)["params"]) <= {35, 55}


def test_none_lifts_a_default_bound_and_a_user_bound_replaces_it():
    study = ntknas.search(
        Budgeted(), 4, storage="memory", sampler="grid", min_params=None, max_params=None, batch=2
    )
    assert not any(_budget.out_of_budget(t) for t in study.trials)
    assert sorted(set(_scored_params(study))) == [35, 55, 67, 139]
    study = ntknas.search(Budgeted(), 2, storage="memory", sampler="random", max_params=50, batch=2)
    assert set(_scored_params(study)) == {35}  # min 30 (default), max 50 (user)
    assert str(Budget.from_dict(study.user_attrs["budget"])) == (
        "30..50 params (min budgeted default, max user)"
    )


def test_a_budget_between_every_network_stops_after_the_limit(monkeypatch):
    monkeypatch.setattr(_budget, "OUT_OF_BUDGET_LIMIT", 6)
    with pytest.raises(ValueError, match="6 candidates in a row were outside the budget"):
        ntknas.search(Tiny(), 2, storage="memory", sampler="random", min_params=56, max_params=66)


def test_a_budget_beyond_the_space_is_refused_before_the_search(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    with pytest.raises(ValueError, match=r"no mlp network has at most 100 params \(user\)"):
        ntknas.search("mlp", 1, storage=url, max_params=100, input_shape=(2, 2, 3), batch=2)
    assert not (tmp_path / "x.db").exists()  # refused before the storage was opened


@pytest.mark.parametrize(
    "low, high, text",
    [
        (None, None, "none (user)"),
        (5_000_000, 6_000_000, "5M..6M params (user)"),
        (None, 21_900_000, "at most 21.9M params (user)"),
        (512_000, None, "at least 512k params (user)"),
    ],
)
def test_budget_text(low, high, text):
    assert str(Budget(low, high)) == text


def test_every_space_has_a_default_budget_and_objective_that_parse():
    for name in list_spaces():
        space = get_space(name)
        budget = resolve_budget(space)
        assert budget.low_from == budget.high_from == "space"
        low, high = space.default_budget
        assert low is None or high is None or 0 < low <= high
        ntknas.study.parse_objective(space.default_objective)
    assert get_space("nb201").default_objective == (
        "rank(ntk_eig_min:max+ntk_eff_rank:max+flops:max)"
    )


@pytest.mark.parametrize("name", ["vit-tiny", "vit-small", "vit-base"])
def test_vit_default_budgets_hold_networks_at_the_default_scoring_settings(name):
    """The default budgets (AutoFormer's search ranges as the networks count at 32x32 input and 10
    logits; the budget counts the network as scored) hold sampled networks."""
    space, scorer, options = get_space(name), Scorer(), ScoreOptions()
    low, high = space.default_budget
    rng, c = random.Random(0), space.choices
    for _ in range(60):
        depth = rng.choice(c.depths)
        config = {
            "embed_dim": rng.choice(c.embed_dims),
            "depth": depth,
            "heads": [rng.choice(c.heads) for _ in range(depth)],
            "mlp_ratio": [rng.choice(c.mlp_ratios) for _ in range(depth)],
        }
        if low <= scorer.count_params(space, config, options) <= high:
            return
    pytest.fail(f"no {name} network drawn in 60 has {low:,}..{high:,} params")
