"""Per-block proxies through the scorer and the search: each block's kernel against a float64
reference from explicit per-block Jacobians, the other proxies unchanged by taking the kernel in
blocks, and the search computing them exactly when its objective names one."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntknas
from ntknas import proxies, scoring
from ntknas.ntk import path_keys
from ntknas.proxies.blocks import block_proxies
from ntknas.scoring._scorer import own_variables
from search_spaces import get_space, vit
from search_spaces._autoformer_layers import VARIANTS, Variant

# One worker runs the module: its tests share the shrunk space's compiled kernels.
pytestmark = pytest.mark.xdist_group("score_blocks")

# vit-tiny cut down as in tests/search_spaces/test_shared_vit.py (the graph and build read the
# same tables): 4-wide heads on a 2x3 patch grid.
_CHOICES = vit._Choices((4, 6), (1, 2), (1, 2), (1.5, 2.0))
_HEAD = Variant(head_dim=4, max_relative_position=14, ln_epsilon=1e-5)
_OPTIONS = dict(batch=2, input_shape=(2, 3, 2), num_classes=2, float64=True, seed=5)
_OPTIONS |= dict(method="structured_derivatives", data="gaussian")
_CONFIG = {"embed_dim": 6, "depth": 2, "heads": [2, 1], "mlp_ratio": [2.0, 1.5]}


@pytest.fixture(scope="module")
def space():
    with pytest.MonkeyPatch.context() as mp:
        s = get_space("vit-tiny")
        mp.setattr(type(s), "choices", _CHOICES)
        mp.setitem(VARIANTS, "autoformer", _HEAD)
        yield s


@pytest.fixture(scope="module")
def scorer(space):
    return scoring.Scorer(shared_graphs=True)


def _reference_blocks(space, config, options, scorer):
    """``{block: (N, N, O, O)}`` from the own network's explicit Jacobian per parameter leaf, in
    float64, at the initial values every path scores the config with."""
    num_classes, shape = options.resolve_io(space)
    module = space.build(config, num_classes=num_classes, input_shape=shape)
    x = scorer._inputs(options, shape)
    graph = scorer._graph(space, num_classes, shape)
    variables = own_variables(module, graph, config, jax.random.PRNGKey(options.seed), x)
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables["params"])
    jac = jax.jacrev(lambda p: module.apply({"params": p}, x))(params)  # leaves (N, O, *leaf)
    n, o = x.shape[0], num_classes
    blocks: dict = {}
    for path, j in jax.tree_util.tree_leaves_with_path(jac):
        j = np.asarray(j, np.float64).reshape(n, o, -1)
        name = space.param_block(path_keys(path))
        blocks[name] = blocks.get(name, 0) + np.einsum("aip,bjp->abij", j, j)
    return blocks


def test_block_proxies_match_explicit_jacobians_and_leave_the_rest_unchanged(space, scorer):
    options = scoring.ScoreOptions(**_OPTIONS)
    with_blocks = scorer.score(space, _CONFIG, options, blocks=True)
    plain = scorer.score(space, _CONFIG, options)
    assert with_blocks.path == plain.path == "shared"
    want = block_proxies(_reference_blocks(space, _CONFIG, options, scorer))
    assert set(want) == set(proxies.BLOCK_PROXIES)
    for name, value in want.items():
        assert math.isfinite(value) and value != 0, name  # every block is there: it can fail
        np.testing.assert_allclose(with_blocks[name], value, rtol=1e-6, err_msg=name)
    shares = sum(with_blocks[f"blk_{b}_share"] for b in ("attention", "mlp", "embedding", "head"))
    np.testing.assert_allclose(shares + with_blocks["blk_norm_share"], 1.0, rtol=1e-12)
    for name in proxies.PROXIES:  # the blocks' sum is the full kernel
        np.testing.assert_allclose(with_blocks[name], plain[name], rtol=1e-7, err_msg=name)
    assert not any(name in plain.kernel_proxies for name in proxies.BLOCK_PROXIES)


def test_the_own_path_gives_the_same_block_proxies(space, scorer):
    options = scoring.ScoreOptions(**_OPTIONS)
    shared = scorer.score(space, _CONFIG, options, blocks=True)
    own = scoring.Scorer().score(space, _CONFIG, options, blocks=True)
    assert own.path == "own"
    for name in proxies.BLOCK_PROXIES:
        np.testing.assert_allclose(own[name], shared[name], rtol=1e-6, err_msg=name)


def test_a_search_computes_block_proxies_when_its_objective_names_one(space):
    study = ntknas.search(
        space,
        n_trials=2,
        objective="rank(blk_attention_share:min+params:max)",
        storage="memory",
        min_params=None,
        max_params=None,
        **_OPTIONS,
    )
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert done and all("blk_attention_share" in t.user_attrs for t in done)
    board = ntknas.leaderboard(study)
    assert board["blk_attention_share"].notna().all() and board["rank_sum"].notna().all()


def test_a_block_objective_on_a_space_without_blocks_is_one_clear_error():
    with pytest.raises(ValueError, match="no parameter blocks"):
        ntknas.search("mlp", n_trials=1, objective="blk_mlp_trace:max", storage="memory")


def test_score_many_computes_blocks_where_the_default_objective_reads_them(space, monkeypatch):
    monkeypatch.setattr(type(space), "default_objective", "rank(blk_head_share:min+params:max)")
    other = {"embed_dim": 4, "depth": 1, "heads": [1], "mlp_ratio": [1.5]}
    df = scoring.score_many(space, [_CONFIG, other], **_OPTIONS)
    assert (df["error"] == "").all()
    assert df["blk_head_share"].notna().all() and df["score"].notna().all()
