"""The masked shared graphs of mlp, resnet and mlp-mixer: a candidate's kernel is its own network's.

Each space is shrunk (its choice lists patched to tiny values, so the largest network is small and
the float64 Jacobian-contraction reference is cheap); the graph code reads the same lists, so the
mechanism under test is the real one. For the smallest, the largest and random configs: the own
network's initial variables embedded into the graph (zeros elsewhere) give the own network's
outputs and NTK (1e-6 relative; both BatchNorm modes), structured derivatives give it too with no
dense fallback, ``select`` gives the own tree (the parameter count), and ``init_own`` gives own-
distributed variables whose outside values do not matter.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from search_spaces import get_space, mixer, mlp, resnet

from ._shared import assert_graph_gives_own_kernel, assert_init_own_in_place, own_variables

# The cases share each graph and its compiled kernels (_GRAPHS, _shared.ntk_of): one xdist worker
# runs them all, so each compiles once.
pytestmark = pytest.mark.xdist_group("shared_masked")

RNG = np.random.default_rng(5)
N, CLASSES = 3, 2

# space -> (module, patched constants, input shape, smallest, largest)
SHRUNK = {
    "mlp": (
        mlp,
        {"WIDTHS": (3, 5), "MAX_DEPTH": 3},
        (2, 2, 2),
        {"depth": 1, "width": 3, "activation": "relu"},
        {"depth": 3, "width": 5, "activation": "sigmoid"},
    ),
    "resnet": (
        resnet,
        {"WIDTHS": (1, 2), "MAX_BLOCKS_PER_STAGE": 2},
        (4, 4, 2),
        {"block": "basic", "depths": [1, 1, 1], "width": 1},
        {"block": "bottleneck", "depths": [2, 2, 2, 2], "width": 2},
    ),
    "mlp-mixer": (
        mixer,
        {
            "PATCH_SIZES": (2, 4),
            "MIN_DEPTH": 1,
            "MAX_DEPTH": 2,
            "HIDDEN_DIMS": (2, 3),
            "TOKENS_MLP_DIMS": (2, 3),
            "CHANNELS_MLP_DIMS": (3, 4),
        },
        (4, 4, 3),
        {"patch_size": 4, "depth": 1, "hidden_dim": 2, "tokens_mlp_dim": 2, "channels_mlp_dim": 3},
        {"patch_size": 2, "depth": 2, "hidden_dim": 3, "tokens_mlp_dim": 3, "channels_mlp_dim": 4},
    ),
}


def _configs(name):
    module, patch, _, small, large = SHRUNK[name]
    with pytest.MonkeyPatch.context() as mp:
        for k, v in patch.items():
            mp.setattr(module, k, v)
        every = list(get_space(name).enumerate())
    picks = RNG.choice(len(every), 2, replace=False)
    return [small, large] + [every[i] for i in picks]


CASES = [(name, i, c) for name in SHRUNK for i, c in enumerate(_configs(name))]
# Random configs and every resnet case run with -m slow: each case compiles the own network's
# kernels (the graph's are compiled once per space and mode); resnet's graph holds both block types.
KERNEL_CASES = [
    pytest.param(
        name, c, id=f"{name}-{i}", marks=[pytest.mark.slow] if i >= 2 or name == "resnet" else []
    )
    for name, i, c in CASES
]
_GRAPHS: dict = {}  # space -> its shrunk shared graph, built once per module (under the patches)


@pytest.fixture
def shrunk(monkeypatch, request):
    name = request.param
    module, patch, shape, _, _ = SHRUNK[name]
    for k, v in patch.items():
        monkeypatch.setattr(module, k, v)
    space = get_space(name)
    if name not in _GRAPHS:
        _GRAPHS[name] = space.shared_graph(CLASSES, shape)
    return space, _GRAPHS[name], shape


@pytest.mark.parametrize(("shrunk", "config"), KERNEL_CASES, indirect=["shrunk"])
def test_embedded_own_variables_give_the_own_kernel(shrunk, config, dense_calls):
    space, graph, shape = shrunk
    x = jax.random.normal(jax.random.PRNGKey(1), (N, *shape), jnp.float64)
    own_module, own = own_variables(space, config, CLASSES, shape, x)
    modes = (False, True) if space.has_batch_norm else (False,)
    assert_graph_gives_own_kernel(graph, config, own_module, own, x, modes)
    assert dense_calls == []


@pytest.mark.parametrize(
    ("shrunk", "config"),
    [(name, c) for name, i, c in CASES if i in (0, 1)],
    ids=[f"{name}-{i}" for name, i, _ in CASES if i in (0, 1)],
    indirect=["shrunk"],
)
def test_init_own_is_the_own_init_in_place(shrunk, config):
    """Own tree, shapes and dtypes; zeros/ones where the own init has them; values outside the
    config's part change nothing (its kernel is the kernel of its embedded own part)."""
    space, graph, shape = shrunk
    x = jax.random.normal(jax.random.PRNGKey(1), (N, *shape), jnp.float64)
    own = jax.jit(space.build(config, CLASSES, shape).init)(jax.random.PRNGKey(0), x)
    variables = graph.init_own(jax.random.PRNGKey(0), x, config)
    assert_init_own_in_place(graph, config, own, variables, x)


_RESNET = {"block": "bottleneck", "depths": [2, 1, 2], "width": 24}


@pytest.mark.parametrize(
    ("name", "config", "patch"),
    [
        ("mlp", {"depth": 4, "width": 256, "activation": "tanh"}, {}),
        # the real widths (so the real fan-ins) with at most two blocks a stage: the graph holds
        # 16 blocks, not 72; the real graph runs with -m slow
        ("resnet", _RESNET, {"MAX_BLOCKS_PER_STAGE": 2}),
        pytest.param("resnet", _RESNET, {}, id="resnet-real", marks=pytest.mark.slow),
        (
            "mlp-mixer",
            {
                "patch_size": 8,
                "depth": 3,
                "hidden_dim": 256,
                "tokens_mlp_dim": 128,
                "channels_mlp_dim": 512,
            },
            {},
        ),
    ],
)
def test_init_own_has_the_own_distribution(name, config, patch, monkeypatch):
    """At the real space's sizes: each weight's std within 10% of the own init's (same law)."""
    for k, v in patch.items():
        monkeypatch.setattr(SHRUNK[name][0], k, v)
    space = get_space(name)
    shape = (16, 16, 3)
    graph = space.shared_graph(CLASSES, shape)
    x = jax.random.normal(jax.random.PRNGKey(1), (2, *shape), jnp.float32)
    own = jax.jit(space.build(config, CLASSES, shape).init)(jax.random.PRNGKey(0), x)["params"]
    mine = graph.select(graph.init_own(jax.random.PRNGKey(0), x, config), config)["params"]
    flat_own = dict(jax.tree_util.tree_leaves_with_path(own))
    checked = 0
    for path, leaf in jax.tree_util.tree_leaves_with_path(mine):
        ref = flat_own[path]
        if ref.size >= 2000:
            assert float(jnp.std(leaf)) == pytest.approx(float(jnp.std(ref)), rel=0.1), path
            assert abs(float(jnp.mean(leaf))) < 0.1 * float(jnp.std(ref)), path
            checked += 1
    assert checked >= 3


def test_largest_mlp_init_own_equals_its_own_init():
    """Same shapes and parameter paths: the same draws (other configs get other values)."""
    space = get_space("mlp")
    config = {"depth": mlp.MAX_DEPTH, "width": max(mlp.WIDTHS), "activation": "gelu"}
    x = jnp.ones((1, 2, 2, 1), jnp.float32)
    graph = space.shared_graph(3, (2, 2, 1))
    own = space.build(config, 3, (2, 2, 1)).init(jax.random.PRNGKey(4), x)
    mine = graph.select(graph.init_own(jax.random.PRNGKey(4), x, config), config)
    for a, b in zip(jax.tree.leaves(mine), jax.tree.leaves(own), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_configs_the_graph_does_not_hold_are_value_errors():
    with pytest.raises(ValueError, match="width=7"):
        get_space("mlp").shared_graph(3, (2, 2, 1)).encode(
            {"depth": 2, "width": 7, "activation": "relu"}
        )
    graph = get_space("resnet").shared_graph(3, (8, 8, 3))
    with pytest.raises(ValueError, match="stem='imagenet'"):
        graph.encode({"block": "basic", "depths": [1, 1, 1], "width": 16, "stem": "imagenet"})
    graph = get_space("mlp-mixer").shared_graph(3, (8, 8, 3))
    config = {
        "patch_size": 16,
        "depth": 2,
        "hidden_dim": 128,
        "tokens_mlp_dim": 64,
        "channels_mlp_dim": 256,
    }
    with pytest.raises(ValueError, match="patch_size=16 does not divide"):
        graph.encode(config)
    with pytest.raises(ValueError, match="no patch size"):
        get_space("mlp-mixer").shared_graph(3, (6, 6, 3))


def test_nb201_init_own_is_its_init():
    graph = get_space("nb201").shared_graph(3, (8, 8, 3))
    assert graph.embed is None
    x = jnp.ones((1, 8, 8, 3), jnp.float32)
    a = graph.init_own(jax.random.PRNGKey(0), x, {"cell": "222222"})
    b = graph.init(jax.random.PRNGKey(0), x)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(u, v)
