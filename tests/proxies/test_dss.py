"""TF-TAS's DSS indicator against a hand computation on a tiny ViT, and on the masked graph."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntknas import ntk
from ntknas.proxies import dss

from .._tiny_vit import tiny_vit


def _random_params(module, seed):
    x = jnp.ones((1, 8, 8, 3))
    leaves, tree = jax.tree.flatten(module.init(jax.random.PRNGKey(0), x)["params"])
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    return jax.tree.unflatten(
        tree, [0.5 * jax.random.normal(k, a.shape, jnp.float64) for k, a in zip(keys, leaves)]
    )


def _by_path(tree):
    return {
        ntk.path_keys(p): np.asarray(a) for p, a in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def test_dss_equals_the_hand_computation():
    module = tiny_vit()[1]
    params = _random_params(module, 1)
    positive = jax.tree.map(jnp.abs, params)
    ones = jnp.ones((1, 8, 8, 3), jnp.float64)
    grad = jax.jit(jax.grad(lambda p: module.apply({"params": p}, ones).sum()))  # one compile
    grads = _by_path(grad(positive))
    weights = _by_path(positive)
    want = 0.0
    for i in range(2):
        for layer in ("qkv", "proj"):  # synaptic diversity: product of nuclear norms
            path = (f"block_{i}", "Attention_0", layer, "kernel")
            want += np.linalg.norm(grads[path], "nuc") * np.linalg.norm(weights[path], "nuc")
        for layer in ("fc1", "fc2"):  # synaptic saliency
            path = (f"block_{i}", layer, "kernel")
            want += np.abs(weights[path] * grads[path]).sum()
    want += np.abs(weights[("head", "kernel")] * grads[("head", "kernel")]).sum()
    fn = dss.dss_fn(module, (8, 8, 3))
    got = fn(params, {})
    # rtol: the nuclear norms come from Gram eigenvalues, whose square roots resolve singular
    # values near zero (the gradients are nearly low-rank) only to about sqrt(eps)
    assert want > 0 and np.isclose(got, want, rtol=1e-6), (got, want)
    # |θ|: the signs of the parameters do not matter, their sizes do
    assert np.isclose(fn(jax.tree.map(jnp.negative, params), {}), got, rtol=1e-6)
    assert not np.isclose(fn(jax.tree.map(lambda a: 2 * a, params), {}), got, rtol=1e-3)


@pytest.mark.parametrize("real", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_dss_on_the_masked_graph_equals_the_own_network(real, monkeypatch):
    from search_spaces import get_space, vit
    from search_spaces._autoformer_layers import VARIANTS, Variant

    space = get_space("vit-tiny")
    if real:
        shape = (16, 16, 3)
        config = {"embed_dim": 216, "depth": 12, "heads": [3, 4] * 6, "mlp_ratio": [3.5, 4.0] * 6}
    else:  # its choices and head width cut down (as in tests/search_spaces/test_shared_vit.py:
        # the graph and build read the same tables) on a 2x3 patch grid; a middle config, with
        # mixed heads and MLP ratios, depth 2 of 3
        shape = (2, 3, 2)
        choices = vit._Choices((4, 8), (1, 2, 3), (1, 2), (1.0, 2.0))
        monkeypatch.setattr(type(space), "choices", choices)
        head = Variant(head_dim=4, max_relative_position=14, ln_epsilon=1e-5)
        monkeypatch.setitem(VARIANTS, "autoformer", head)
        config = {"embed_dim": 8, "depth": 2, "heads": [2, 1], "mlp_ratio": [1.0, 2.0]}
    graph = space.shared_graph(10, shape)
    variables = graph.init_own(jax.random.PRNGKey(0), jnp.ones((1, *shape)), config)
    variables = jax.tree.map(lambda a: np.asarray(a, np.float64), variables)
    arch = np.asarray(graph.encode(config), np.float64)
    on_graph = dss.dss_fn(graph.module, shape)(variables["params"], {}, arch)
    own_module = space.build(config, 10, shape)
    own = dss.dss_fn(own_module, shape)(graph.select(variables, config)["params"], {})
    assert on_graph > 0 and np.isclose(on_graph, own, rtol=1e-6), (on_graph, own)


def test_dss_needs_attention_and_mlp():
    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(3, name="fc1")(x.reshape(x.shape[0], -1))

    module = MLP()
    params = module.init(jax.random.PRNGKey(0), jnp.ones((1, 4, 4, 3)))["params"]
    with pytest.raises(dss.NotAViTError, match="attention"):
        dss.dss_fn(module, (4, 4, 3))(params, {})
