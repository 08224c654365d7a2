"""Structured derivatives on the network of every registered search space, at a size CI affords.

Each space's small config and input (the contract tests' table, which must cover every registered
space) is built with 2 logits; its kernel by structured derivatives equals the float64 reference
from explicit Jacobians, in both BatchNorm modes where the network has BatchNorm, and no primitive
falls back to the dense rule. The spaces whose small config still takes a minute here run shrunk
(``SHRUNK``: their width and depth constants patched, which ``build`` reads, so the network code
and its primitives are the real ones); their contract-table sizes, and larger inputs in
``test_models.py``, run under ``-m slow``.
"""

import jax
import jax.numpy as jnp
import pytest

from search_spaces import get_space, list_spaces, nb201, resnet, vit
from search_spaces._autoformer_layers import VARIANTS, Variant
from tests.search_spaces.test_contract import SMALL

from ._reference import check_all, dense_fallbacks


def _nb201(mp, space):  # one cell a stage (each still holds every edge), 2-4 channels
    mp.setattr(nb201, "STAGE_CHANNELS", (2, 3, 4))
    mp.setattr(nb201, "CELLS_PER_STAGE", 1)


def _resnet(mp, space):
    mp.setattr(resnet, "WIDTHS", (2,))


def _vit(mp, space):  # tiny choices and 4-wide heads, as tests/search_spaces/test_shared_vit.py
    mp.setattr(type(space), "choices", vit._Choices((8,), (2,), (1, 2), (1.5, 2.0)))
    mp.setitem(VARIANTS, "autoformer", Variant(4, max_relative_position=14, ln_epsilon=1e-5))


_VIT = (_vit, {"embed_dim": 8, "depth": 2, "heads": [2, 1], "mlp_ratio": [1.5, 2.0]}, (4, 4, 3))
# space -> (patch(monkeypatch, space), config, input shape)
SHRUNK = {
    "nb201": (_nb201, SMALL["nb201"][0], (8, 8, 3)),
    # bottleneck, depths 1, 2, 1: identity and projection shortcuts
    "resnet": (_resnet, dict(SMALL["resnet"][0], width=2), (8, 8, 3)),
    "vit-tiny": _VIT,
    "vit-small": _VIT,
    "vit-base": _VIT,
}


# The ViT spaces differ only in their choices, which _vit replaces: shrunk, they build one network.
# The first space of each such group checks it; the others check that they build that network.
SAME_SHRUNK = {"vit-small": "vit-tiny", "vit-base": "vit-tiny"}


def _shrunk_module(monkeypatch, space_name):
    space = get_space(space_name)
    patch, config, shape = SHRUNK[space_name]
    patch(monkeypatch, space)
    return space.build(space.validate(config), num_classes=2, input_shape=shape)


def _cases():
    for name in list_spaces():
        modes = (False, True) if get_space(name).has_batch_norm else (False,)
        for train in modes:
            mode = "train" if train else "eval"
            yield pytest.param(name, train, name in SHRUNK, id=f"{name}-{mode}")
            if name in SHRUNK:
                slow = pytest.mark.slow
                yield pytest.param(name, train, False, id=f"{name}-{mode}-small", marks=slow)


@pytest.mark.parametrize("space_name, train, shrunk", list(_cases()))
def test_structured_derivatives_on_every_space(space_name, train, shrunk, monkeypatch):
    space = get_space(space_name)
    config, shape = SMALL[space_name]
    if shrunk:
        patch, config, shape = SHRUNK[space_name]
        patch(monkeypatch, space)
    module = space.build(space.validate(config), num_classes=2, input_shape=shape)
    if shrunk and space_name in SAME_SHRUNK:
        assert module == _shrunk_module(monkeypatch, SAME_SHRUNK[space_name])
        return
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(7), 3)
    x1 = jax.random.normal(k1, (2, *shape), jnp.float64)
    x2 = jax.random.normal(k2, (1, *shape), jnp.float64)
    variables = jax.tree.map(lambda a: a.astype(jnp.float64), jax.jit(module.init)(k3, x1))
    params = variables["params"]
    # Random BatchNorm statistics, so eval mode cannot pass by the identity of fresh ones.
    state = {k: v for k, v in variables.items() if k != "params"}
    state = jax.tree.map(lambda a: a + 0.3 * jax.random.uniform(k3, a.shape, a.dtype), state)

    def f(p, xs):
        x, s = xs
        if train:
            return module.apply({"params": p, **s}, x, train=True, mutable=["batch_stats"])[0]
        return module.apply({"params": p, **s}, x)

    vmap_axes = None if train else ((0, None), 0)
    with dense_fallbacks() as dense:
        check_all(f, (x1, state), (x2, state), params, against_jc=False, vmap_axes=vmap_axes)
    assert dense == [], f"dense fallback for {sorted(set(dense))}"
