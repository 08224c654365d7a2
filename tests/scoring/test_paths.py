"""The shared path against the own path: the same kernel for the same parameters (float64), the
same initial values and so the same scores for a seed, the config's own params and FLOPs, a
deterministic draw per seed, and which path each rule picks."""

import math

import jax
import numpy as np
import pytest

from ntknas import proxies, scoring
from search_spaces import get_space, mlp, resnet

from ..search._toys import Tiny

# The module's tests share their compiled graphs and networks (module-scoped scorers): one xdist
# worker runs them all, in order.
pytestmark = pytest.mark.xdist_group("paths")

# The spaces shrunk (as in tests/search_spaces/test_shared_masked.py): a shared graph is its
# space's largest network, and these tests check the scorer's plumbing around it.
_SHRUNK = {
    mlp: {"WIDTHS": (3, 5), "MAX_DEPTH": 3},
    resnet: {"WIDTHS": (1, 2), "MAX_BLOCKS_PER_STAGE": 2},
}
_SMALL = dict(batch=2, input_shape=(8, 8, 3), num_classes=2, float64=True, data="digits", seed=3)
# The method per space: resnet's graph pins Jacobian contraction, as "auto" lowers, costs and
# compiles every method on both paths (a minute of the test's time); auto's choice is checked in
# tests/ntk, and the methods' agreement on the graphs in tests/search_spaces. mlp keeps "auto".
_METHOD = {"mlp": "auto", "resnet": "jacobian_contraction"}


def _options(space_name, bn, **changes):
    return scoring.ScoreOptions(bn=bn, method=_METHOD[space_name], **_SMALL | changes)


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


@pytest.fixture(scope="module")
def own_scorer(shared_scorer):
    """One own-path scorer for the module, under the same patches (each own network compiles
    once per setting: the kernel test and the score test share it), holding the shared scorer's
    graphs (the own variables are drawn by the graph's initializer, compiled once)."""
    scorer = scoring.Scorer()
    scorer._graphs = shared_scorer._graphs
    return scorer


def _kernel(scorer, route, variables, options):
    inputs = scorer._inputs(options, route.input_shape)
    return scorer._evaluate(route, variables, inputs, options)[2]


@pytest.mark.parametrize("space_name, config, bn", _CASES)
def test_shared_kernel_equals_own_kernel_for_the_same_parameters(
    shared_scorer, own_scorer, space_name, config, bn
):
    space = get_space(space_name)
    options = _options(space_name, bn)
    config = space.validate(config)
    own = own_scorer._route(space, config, options, "own")
    shared = shared_scorer._route(space, config, options, "shared")
    assert (own.path, shared.path) == ("own", "shared")
    own_variables = own_scorer._initial(own, options, own_scorer._inputs(options, own.input_shape))
    graph = shared.forward.shared
    placed = jax.tree.map(lambda a: a.astype(np.float64), graph.embed(own_variables, config))
    k_own = _kernel(own_scorer, own, own_variables, options)
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


@pytest.mark.parametrize("space_name, config, bn", _CASES[:2])
def test_both_paths_score_the_same_for_a_seed(
    shared_scorer, own_scorer, space_name, config, bn, monkeypatch
):
    """One initializer for both paths: the same parameters, so the same proxies, params, FLOPs."""
    monkeypatch.setattr(shared_scorer, "shared_flops_max", math.inf)  # the rule picks shared
    space = get_space(space_name)
    options = _options(space_name, bn)
    got = shared_scorer.score(space, config, options)
    ref = own_scorer.score(space, config, options)
    assert (got.path, ref.path) == ("shared", "own")
    assert got.params == ref.params and got.flops == ref.flops
    assert got.ntk_flops > ref.ntk_flops  # the largest network's kernel is computed
    assert math.isfinite(ref["ntk_cond"]) and ref["ntk_trace"] > 0
    for name, value in ref.kernel_proxies.items():
        assert got[name] == pytest.approx(value, rel=1e-6, nan_ok=True), name


@pytest.mark.parametrize("space_name, config, bn", _CASES[:1])
def test_shared_path_draws_deterministically_per_seed(
    shared_scorer, space_name, config, bn, monkeypatch
):
    monkeypatch.setattr(shared_scorer, "shared_flops_max", math.inf)
    space = get_space(space_name)
    options = _options(space_name, bn)
    got = shared_scorer.score(space, config, options)
    assert got.path == "shared"
    assert got.as_dict()["path"] == "shared"
    # a new draw of the same seed through the compiled graph: the same scores, bit for bit
    shared_scorer._results.clear()
    again = shared_scorer.score(space, config, options)
    assert again.compile_seconds == 0.0
    assert dict(again.kernel_proxies) == dict(got.kernel_proxies)
    other_seed = shared_scorer.score(space, config, _options(space_name, bn, seed=4))
    assert other_seed["ntk_cond"] != got["ntk_cond"]


@pytest.mark.parametrize("space_name, config, bn", _CASES[:1])
def test_an_error_tracing_the_own_network_in_the_thread_is_the_scores_error(
    shared_scorer, space_name, config, bn, monkeypatch
):
    """The own params/FLOPs are traced in a thread on the shared path: its error is raised by
    score() itself (a search then fails that one candidate), and nothing is memoized."""
    monkeypatch.setattr(shared_scorer, "shared_flops_max", math.inf)
    space = get_space(space_name)
    options = _options(space_name, bn, seed=11)
    assert shared_scorer.shared_for_every_config(space, options)  # decided before the patch

    def broken(*args):
        raise ValueError("own network failed")

    monkeypatch.setattr(shared_scorer, "own_flops", broken)
    with pytest.raises(ValueError, match="own network failed"):
        shared_scorer.score(space, config, options)
    monkeypatch.undo()
    monkeypatch.setattr(shared_scorer, "shared_flops_max", math.inf)
    assert shared_scorer.score(space, config, options).path == "shared"


@pytest.mark.parametrize("space_name", ["mlp", "resnet"])
def test_own_variables_have_the_own_tree_shapes_and_dtypes(shared_scorer, space_name):
    """select(init_own(...)) is exactly what the own network's init makes, leaf for leaf."""
    space = get_space(space_name)
    num_classes, input_shape = _SMALL["num_classes"], _SMALL["input_shape"]
    graph = space.shared_graph(num_classes, input_shape)
    x = np.random.default_rng(0).normal(size=(2, *input_shape)).astype(np.float32)
    key = jax.random.PRNGKey(0)
    for config in (next(iter(space.enumerate())), *[c for n, c, _ in _CASES if n == space_name]):
        config = space.validate(config)
        module = space.build(config, num_classes, input_shape)
        got = scoring.own_variables(module, graph, config, key, x)
        want = jax.eval_shape(module.init, key, x)
        assert jax.tree.structure(got) == jax.tree.structure(want)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            assert (a.shape, a.dtype) == (b.shape, b.dtype)
        kernels = [a for a in jax.tree.leaves(got["params"]) if a.ndim >= 2]
        assert kernels and all(np.abs(a).max() > 0 for a in kernels)  # drawn, not zeros


def test_the_rule_sends_small_configs_to_their_own_network_and_large_ones_to_the_graph(
    monkeypatch,
):
    """At mlp's real extent (depth 1..10, widths 64..2048; shapes only, nothing is compiled)."""
    monkeypatch.setattr(mlp, "WIDTHS", (64, 2048))
    monkeypatch.setattr(mlp, "MAX_DEPTH", 10)
    space, options = get_space("mlp"), scoring.ScoreOptions()
    scorer = scoring.Scorer(shared_graphs=True)
    small = space.validate({"depth": 1, "width": 64, "activation": "relu"})
    large = space.validate({"depth": 9, "width": 2048, "activation": "relu"})
    graph_flops = scorer.shared_flops(space, small, options)
    assert graph_flops == scorer.shared_flops(space, large, options)  # one figure per graph
    assert graph_flops > scoring.SHARED_FLOPS_MAX * scorer.own_flops(space, small, options)
    assert graph_flops <= scoring.SHARED_FLOPS_MAX * scorer.own_flops(space, large, options)
    assert scorer._route(space, small, options, "auto").path == "own"
    assert scorer._route(space, large, options, "auto").path == "shared"
    assert scoring.Scorer()._route(space, large, options, "own").path == "own"


def test_a_space_whose_graph_fits_its_smallest_network_routes_without_own_flops():
    """vit-small at its real extent (shapes only): its graph's FLOPs are within the space's bound
    of its smallest network's, so a config is routed to the graph before its own FLOPs are
    traced; mlp's graph is not, so each config's own FLOPs decide."""
    options = scoring.ScoreOptions()
    scorer = scoring.Scorer(shared_graphs=True)
    vit = get_space("vit-small")
    smallest = min(
        (vit.validate(c) for c in vit.size_extremes()),
        key=lambda c: scorer.own_flops(vit, c, options),
    )
    graph_flops = scorer.shared_flops(vit, smallest, options)
    assert graph_flops > scoring.SHARED_FLOPS_MAX * scorer.own_flops(vit, smallest, options)
    assert graph_flops <= scorer.flops_bound(vit) * scorer.own_flops(vit, smallest, options)
    assert scorer.shared_for_every_config(vit, options)
    config = vit.validate(
        {"embed_dim": 384, "depth": 13, "heads": [5, 6, 7] * 4 + [6], "mlp_ratio": [3.5] * 13}
    )
    traced = set(scorer._flops)
    assert scorer._route(vit, config, options, "auto").path == "shared"
    assert set(scorer._flops) == traced  # the config's own network was not traced
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mlp, "WIDTHS", (64, 2048))
        mp.setattr(mlp, "MAX_DEPTH", 10)
        assert not scoring.Scorer(shared_graphs=True).shared_for_every_config(
            get_space("mlp"), options
        )


def test_extremes_the_graph_does_not_hold_are_left_out_of_the_shortcut(monkeypatch):
    """Only the extremes a graph holds bound its FLOPs (e.g. resnet's other stem); none held:
    no shortcut. Shapes only: the FLOPs are stubbed."""
    space, options = get_space("mlp"), scoring.ScoreOptions()
    held = {"depth": 2, "width": 64, "activation": "relu"}
    other = {"depth": 1, "width": 64, "activation": "relu"}
    flops = {2: (100.0, 50.0), 1: (None, 10.0)}  # depth -> (graph's FLOPs or not held, own)

    def decides(extremes):
        scorer = scoring.Scorer(shared_graphs=True)
        monkeypatch.setattr(scorer, "shared_flops", lambda s, c, o: flops[c["depth"]][0])
        monkeypatch.setattr(scorer, "own_flops", lambda s, c, o: flops[c["depth"]][1])
        monkeypatch.setattr(space, "size_extremes", lambda: extremes)
        monkeypatch.setattr(space, "validate", lambda c: c)  # whatever widths a patch allows
        return scorer.shared_for_every_config(space, options)

    assert decides((held, other))  # 100 <= 2.5 * 50; depth 1 (own 10) is not held
    assert decides((other, held))
    assert not decides((other,))


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
    route = shared_scorer._route(space, config, options, "shared")
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
