"""The masked shared graph of the vit spaces: a candidate's kernel is its own network's.

Each vit space is shrunk (its choices patched to tiny values and the head width to 4; the graph
and ``build`` read the same tables, so the mechanism under test is the real one) and scored on a
2x3 patch grid (non-square: the relative-position tables differ per axis). For the smallest, the
largest and random configs of each: the own network's variables embedded into the graph (zeros
elsewhere) give the own outputs and the own NTK in float64 (1e-6 relative) by Jacobian
contraction and by structured derivatives with no dense fallback; ``select`` gives the own tree
(the parameter count); ``init_own`` gives the own zeros and ones, and values outside the config's
part change nothing. The real spaces' sizes run with ``-m slow``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from search_spaces import get_space, vit
from search_spaces._autoformer_layers import VARIANTS, Variant

from ._shared import (
    SD,
    assert_close,
    assert_graph_gives_own_kernel,
    assert_init_own_in_place,
    assert_select_is_own,
    ntk_of,
    own_variables,
)

# The cases share each graph and its compiled kernels (_GRAPHS, _shared.ntk_of): one xdist worker
# runs them all, so each compiles once.
pytestmark = pytest.mark.xdist_group("shared_vit")

RNG = np.random.default_rng(11)
N, CLASSES = 2, 2
SHAPE = (2, 3, 2)  # default patch 1: a 2x3 grid, 7 tokens
TINY_HEAD = Variant(head_dim=4, max_relative_position=14, ln_epsilon=1e-5)
SHRUNK = {
    "vit-tiny": vit._Choices((4, 6), (1, 2), (1, 2), (1.5, 2.0)),
    "vit-small": vit._Choices((4, 6, 8), (1, 2, 3), (1, 2, 3), (1.0, 1.5, 2.0)),
    "vit-base": vit._Choices((6, 8), (2, 3), (2, 3), (1.0, 1.5)),
}


def _extremes(c):
    small = {"embed_dim": min(c.embed_dims), "depth": min(c.depths)}
    large = {"embed_dim": max(c.embed_dims), "depth": max(c.depths)}
    for config, pick in ((small, min), (large, max)):
        config["heads"] = [pick(c.heads)] * config["depth"]
        config["mlp_ratio"] = [pick(c.mlp_ratios)] * config["depth"]
    return [small, large]


def _random(c):
    depth = int(RNG.choice(c.depths))
    return {
        "embed_dim": int(RNG.choice(c.embed_dims)),
        "depth": depth,
        "heads": [int(h) for h in RNG.choice(c.heads, depth)],
        "mlp_ratio": [float(r) for r in RNG.choice(c.mlp_ratios, depth)],
    }


CASES = [
    (name, i, c)
    for name, choices in SHRUNK.items()
    for i, c in enumerate(_extremes(choices) + [_random(choices), _random(choices)])
]


# Each case compiles three kernels (~2 min on two busy cores): CI runs these, the rest with -m slow.
FAST = {("vit-tiny", 0), ("vit-tiny", 1), ("vit-small", 2)}
slow = [pytest.mark.slow]


_GRAPHS: dict = {}  # space -> its shrunk shared graph, built once per module (under the patches)


@pytest.fixture
def shrunk(monkeypatch, request):
    space = get_space(request.param)
    monkeypatch.setattr(type(space), "choices", SHRUNK[request.param])
    monkeypatch.setitem(VARIANTS, "autoformer", TINY_HEAD)
    if request.param not in _GRAPHS:
        _GRAPHS[request.param] = space.shared_graph(CLASSES, SHAPE)
    return space, _GRAPHS[request.param]


@pytest.mark.parametrize(
    ("shrunk", "config"),
    [
        pytest.param(
            name, c, id=f"{name}-{i}", marks=[] if (name, i) in FAST else [pytest.mark.slow]
        )
        for name, i, c in CASES
    ],
    indirect=["shrunk"],
)
def test_embedded_own_variables_give_the_own_kernel(shrunk, config, dense_calls):
    space, graph = shrunk
    x = jax.random.normal(jax.random.PRNGKey(1), (N, *SHAPE), jnp.float64)
    own_module, own = own_variables(space, config, CLASSES, SHAPE, x)
    assert_graph_gives_own_kernel(graph, config, own_module, own, x)
    assert dense_calls == []


@pytest.mark.parametrize(
    ("shrunk", "config"),
    [
        pytest.param(name, c, id=f"{name}-smallest", marks=[] if name == "vit-tiny" else slow)
        for name, i, c in CASES
        if i == 0
    ],
    indirect=["shrunk"],
)
def test_init_own_is_the_own_init_in_place(shrunk, config):
    """Own tree, shapes and dtypes; the own zeros and ones; init_own's values outside the
    smallest config's part (other heads, units, channels, layers) change nothing."""
    space, graph = shrunk
    x = jax.random.normal(jax.random.PRNGKey(1), (N, *SHAPE), jnp.float64)
    own = space.build(config, CLASSES, SHAPE).init(jax.random.PRNGKey(0), x)
    variables = graph.init_own(jax.random.PRNGKey(0), x, config)
    assert_init_own_in_place(graph, config, own, variables, x, outside_drawn=True)


def test_configs_the_graph_does_not_hold_are_value_errors():
    graph = get_space("vit-small").shared_graph(CLASSES, (32, 32, 3))  # patch 8
    config = {"embed_dim": 320, "depth": 12, "heads": [5] * 12, "mlp_ratio": [3.0] * 12}
    assert graph.encode(dict(config, patch_size=8)).shape == (2 + 2 * 14,)
    with pytest.raises(ValueError, match=r"variant='autoprox' has no shared graph"):
        graph.encode(dict(config, variant="autoprox"))
    with pytest.raises(ValueError, match=r"patch_size=4 is not the shared graph's.*\[8\]"):
        graph.encode(dict(config, patch_size=4))
    with pytest.raises(ValueError, match=r"embed_dim=300 is not allowed"):
        graph.encode(dict(config, embed_dim=300))


def test_arch_of_a_config():
    graph = get_space("vit-tiny").shared_graph(CLASSES, (32, 32, 3))
    config = {"embed_dim": 216, "depth": 12, "heads": [3, 4] * 6, "mlp_ratio": [3.5, 4.0] * 6}
    arch = graph.encode(config)
    np.testing.assert_array_equal(arch[:2], [216, 12])
    np.testing.assert_array_equal(arch[2:16], [3, 4] * 6 + [0, 0])
    np.testing.assert_array_equal(arch[16:], [756, 864] * 6 + [0, 0])  # int(216 * ratio)
    assert graph.module.max_hidden == 960 and graph.module.max_heads == 4


# --- the real spaces' sizes (minutes each on two busy cores) --------------------------------------

REAL_SHAPE = (8, 8, 3)  # default patch 2: a 4x4 grid


def _real_cases():
    for name in SHRUNK:
        choices = get_space(name).choices
        for i, config in enumerate(_extremes(choices)):
            yield pytest.param(name, config, id=f"{name}-{i}", marks=pytest.mark.slow)


@pytest.mark.parametrize(("name", "config"), list(_real_cases()))
def test_real_sizes_outputs_and_params(name, config):
    space = get_space(name)
    graph = space.shared_graph(CLASSES, REAL_SHAPE)
    x = jax.random.normal(jax.random.PRNGKey(1), (N, *REAL_SHAPE), jnp.float64)
    own_module, own = own_variables(space, config, CLASSES, REAL_SHAPE, x)
    shared = graph.embed(own, config)
    assert_select_is_own(graph, shared, own, config)
    arch = jnp.asarray(graph.encode(config), jnp.float64)
    want = jax.jit(own_module.apply)(own, x)
    got = jax.jit(graph.module.apply)(shared, x, arch)
    assert_close(got, want)


@pytest.mark.slow
@pytest.mark.parametrize("which", [0, 1], ids=["smallest", "largest"])
def test_real_vit_tiny_kernel(which, dense_calls):
    """vit-tiny at its own sizes: structured derivatives on the graph == the own network's JC."""
    space = get_space("vit-tiny")
    config = _extremes(space.choices)[which]
    graph = space.shared_graph(CLASSES, REAL_SHAPE)
    x = jax.random.normal(jax.random.PRNGKey(1), (N, *REAL_SHAPE), jnp.float64)
    own_module, own = own_variables(space, config, CLASSES, REAL_SHAPE, x)
    shared = graph.embed(own, config)
    arch = jnp.asarray(graph.encode(config), jnp.float64)
    want = ntk_of(own_module, own, x)
    assert_close(ntk_of(graph.module, shared, x, arch, method=SD), want)
    assert dense_calls == []


@pytest.mark.slow
def test_init_own_has_the_own_distribution():
    """vit-small at its sizes: each weight's std within 10% of the own init's (same law)."""
    space = get_space("vit-small")
    config = {"embed_dim": 384, "depth": 13, "heads": [6, 5] * 6 + [7], "mlp_ratio": [3.5] * 13}
    graph = space.shared_graph(CLASSES, REAL_SHAPE)
    x = jax.random.normal(jax.random.PRNGKey(1), (N, *REAL_SHAPE), jnp.float32)
    own = jax.jit(space.build(config, CLASSES, REAL_SHAPE).init)(jax.random.PRNGKey(0), x)
    mine = graph.select(graph.init_own(jax.random.PRNGKey(0), x, config), config)["params"]
    flat_own = dict(jax.tree_util.tree_leaves_with_path(own["params"]))
    for path, leaf in jax.tree_util.tree_leaves_with_path(mine):
        ref = flat_own[path]
        if ref.size >= 2000:
            assert float(jnp.std(leaf)) == pytest.approx(float(jnp.std(ref)), rel=0.1), path
            assert abs(float(jnp.mean(leaf))) < 0.1 * float(jnp.std(ref)), path
