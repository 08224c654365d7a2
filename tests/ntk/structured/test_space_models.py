"""Structured derivatives on the network of every registered search space, at a size CI affords.

Each space's small config and input (the contract tests' table, which must cover every registered
space) is built with 2 logits; its kernel by structured derivatives equals the float64 reference
from explicit Jacobians, in both BatchNorm modes where the network has BatchNorm, and no primitive
falls back to the dense rule. Larger inputs run in ``test_models.py`` under ``-m slow``.
"""

import jax
import jax.numpy as jnp
import pytest

from search_spaces import get_space, list_spaces
from tests.search_spaces.test_contract import SMALL

from ._reference import check_all, dense_fallbacks


def _cases():
    for name in list_spaces():
        modes = (False, True) if get_space(name).has_batch_norm else (False,)
        for train in modes:
            yield pytest.param(name, train, id=f"{name}-{'train' if train else 'eval'}")


@pytest.mark.parametrize("space_name, train", list(_cases()))
def test_structured_derivatives_on_every_space(space_name, train):
    space = get_space(space_name)
    config, shape = SMALL[space_name]
    module = space.build(space.validate(config), num_classes=2, input_shape=shape)
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
