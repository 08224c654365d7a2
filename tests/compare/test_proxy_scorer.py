"""ProxyScorer: one row per (config, options), compiled functions kept across option sets."""

import math

import pytest

from ntknas.compare import ProxyScorer, score_all
from ntknas.scoring import ScoreOptions, Scorer
from search_spaces import get_space, mlp

CONFIG = {"depth": 2, "width": 8, "activation": "relu"}


@pytest.fixture(autouse=True)
def small_mlp(monkeypatch):
    """The space shrunk to 2 layers of 4 or 8 units (its code is the real one): each config's
    own path draws the space's largest network for its initial values."""
    monkeypatch.setattr(mlp, "WIDTHS", (4, 8))
    monkeypatch.setattr(mlp, "MAX_DEPTH", 2)


def _options(data, bn="eval"):
    return ScoreOptions(batch=3, data=data, bn=bn, input_shape=(4, 4, 1), num_classes=3)


def test_rows_reuse_the_kernel_across_data_and_match_score_all():
    space = get_space("mlp")
    proxies = ProxyScorer(Scorer(), naswot_batch=4)
    first = proxies.score_row(space, CONFIG, _options("gaussian"))
    second = proxies.score_row(space, CONFIG, _options("digits"))
    assert first["error"] == second["error"] == ""
    assert first["compile_seconds"] > 0 and second["compile_seconds"] == 0.0
    assert first["params"] == second["params"]
    assert not math.isclose(first["ntk_trace"], second["ntk_trace"], rel_tol=1e-6)
    alone = score_all(space, [CONFIG], _options("digits"), naswot_batch=4).iloc[0]
    for name in ("ntk_cond", "ntk_trace", "pntk_sum_cond", "synflow"):
        assert math.isclose(alone[name], second[name], rel_tol=1e-4), name


def test_a_failing_config_is_a_row_with_its_reason():
    row = ProxyScorer(Scorer()).score_row(
        get_space("mlp"), {**CONFIG, "width": -1}, _options("gaussian")
    )
    assert row["error"] and "description" in row
