"""The shared path against the own path: the same kernel for the same parameters (float64), the
config's own params and FLOPs, a deterministic draw per seed, and which path each rule picks."""

import jax
import numpy as np
import pytest

from ntknas import proxies, scoring
from search_spaces import get_space, mlp, resnet

from ..search._toys import Tiny

# The spaces shrunk (as in tests/search_spaces/test_shared_masked.py): a shared graph is its
# space's largest network, and these tests check the scorer's plumbing around it.
_SHRUNK = {
    mlp: {"WIDTHS": (3, 5), "MAX_DEPTH": 3},
    resnet: {"WIDTHS": (1, 2), "MAX_BLOCKS_PER_STAGE": 2},
}
_SMALL = dict(batch=2, input_shape=(8, 8, 3), num_classes=2, float64=True, data="digits", seed=3)
_CASES = [
    ("mlp", {"depth": 2, "width": 3, "activation": "tanh"}, "eval"),
    ("resnet", {"block": "basic", "depths": [1, 2, 1], "width": 1}, "train"),
    # each resnet case compiles its graph in float64: minutes on 2 busy cores
    pytest.param(
        "resnet",
        {"block": "bottleneck", "depths": [2, 1, 1, 2], "width": 2},
        "eval",
        marks=pytest.mark.slow,
    ),
]


@pytest.fixture(scope="module")
def shared_scorer():
    """One shared-graph scorer for the module (each graph compiles once per setting)."""
    with pytest.MonkeyPatch.context() as mp:
        for module, constants in _SHRUNK.items():
            for name, value in constants.items():
                mp.setattr(module, name, value)
        yield scoring.Scorer(shared_graphs=True)


def _kernel(scorer, route, variables, options):
    inputs = scorer._inputs(options, route.input_shape)
    return scorer._evaluate(route, variables, inputs, options)[2]


@pytest.mark.parametrize("space_name, config, bn", _CASES)
def test_shared_kernel_equals_own_kernel_for_the_same_parameters(
    shared_scorer, space_name, config, bn
):
    space = get_space(space_name)
    options = scoring.ScoreOptions(bn=bn, **_SMALL)
    config = space.validate(config)
    own = shared_scorer._route(space, config, options, shared=False)
    shared = shared_scorer._route(space, config, options, shared=True)
    assert (own.path, shared.path) == ("own", "shared")
    own_variables = shared_scorer._initial(
        own, options, shared_scorer._inputs(options, own.input_shape)
    )
    graph = shared.forward.shared
    placed = jax.tree.map(lambda a: a.astype(np.float64), graph.embed(own_variables, config))
    k_own = _kernel(shared_scorer, own, own_variables, options)
    k_shared = _kernel(shared_scorer, shared, placed, options)
    assert k_own.dtype == k_shared.dtype == np.float64
    scale = np.abs(k_own).max()
    assert scale > 0
    np.testing.assert_allclose(k_shared, k_own, rtol=0, atol=1e-9 * scale)
    n = shared_scorer.count_params(space, config, options)
    assert n == sum(a.size for a in jax.tree.leaves(own_variables["params"]))
    p_own, p_shared = proxies.kernel_proxies(k_own, n), proxies.kernel_proxies(k_shared, n)
    for name, value in p_own.items():
        assert p_shared[name] == pytest.approx(value, rel=1e-6, nan_ok=True), name


@pytest.mark.parametrize("space_name, config, bn", _CASES[:1])
def test_shared_path_scores_own_params_and_flops_deterministically(
    shared_scorer, space_name, config, bn
):
    space = get_space(space_name)
    options = scoring.ScoreOptions(bn=bn, **_SMALL)
    got = shared_scorer.score(space, config, options)
    ref = scoring.Scorer().score(space, config, options)
    assert (got.path, ref.path) == ("shared", "own")
    assert got.params == ref.params and got.flops == ref.flops
    assert got.ntk_flops > ref.ntk_flops  # the largest network's kernel is computed
    assert got.as_dict()["path"] == "shared"
    # a new draw of the same seed through the compiled graph: the same scores, bit for bit
    shared_scorer._results.clear()
    again = shared_scorer.score(space, config, options)
    assert again.compile_seconds == 0.0
    assert dict(again.kernel_proxies) == dict(got.kernel_proxies)
    other_seed = shared_scorer.score(
        space, config, scoring.ScoreOptions(bn=bn, **_SMALL | {"seed": 4})
    )
    assert other_seed["ntk_cond"] != got["ntk_cond"]


def test_a_space_without_a_shared_graph_takes_the_own_path():
    got = scoring.Scorer(shared_graphs=True).score(
        Tiny(), {"width": 4, "depth": 1}, scoring.ScoreOptions(batch=2)
    )
    assert got.path == "own" and got.compile_seconds > 0


def test_a_config_the_graph_does_not_hold_takes_the_own_path(shared_scorer):
    """resnet's graph holds the input's default stem; a config naming the other is scored alone."""
    space = get_space("resnet")
    options = scoring.ScoreOptions(batch=2, input_shape=(8, 8, 3), num_classes=2)
    config = space.validate({"block": "basic", "depths": [1, 1, 1], "width": 2, "stem": "imagenet"})
    route = shared_scorer._route(space, config, options, shared=True)
    assert route.path == "own"


def test_score_many_takes_the_shared_path_from_its_threshold(monkeypatch):
    from ntknas.scoring import _api

    seen = []
    monkeypatch.setattr(
        _api,
        "_default_scorer",
        lambda shared_graphs: (
            seen.append(shared_graphs) or scoring.Scorer(shared_graphs=shared_graphs)
        ),
    )
    configs = [{"width": 4, "depth": 1}, {"width": 8, "depth": 1}]
    monkeypatch.setattr(_api, "SHARED_GRAPH_MIN", 3)
    scoring.score_many(Tiny(), configs, batch=2)
    monkeypatch.setattr(_api, "SHARED_GRAPH_MIN", 2)
    df = scoring.score_many(Tiny(), configs, batch=2)
    assert seen == [False, True]
    assert list(df["path"]) == ["own", "own"]  # Tiny has no shared graph
