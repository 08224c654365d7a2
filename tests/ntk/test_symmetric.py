"""NTK-vector products on Θ(x, x): the upper block triangle plus transposes equals every pair."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntknas import ntk
from ntknas.ntk import _vector_products

from . import zoo
from .test_methods import assert_close

CASES = {c.name: c for c in zoo.all_cases(np.float64)}


@pytest.fixture(autouse=True)
def always_split(monkeypatch):
    """These small networks would not be split by the compile-time rule: force the split."""
    monkeypatch.setattr(_vector_products, "SYMMETRY", "always")


def _all_pairs(fn, *args):
    """``fn(*args)`` with the symmetric split switched off (every example pair computed)."""
    _vector_products.SYMMETRY = "never"
    try:
        return fn(*args)
    finally:
        _vector_products.SYMMETRY = "always"


@pytest.mark.parametrize("n", [3, 5, 8])
@pytest.mark.parametrize(
    "trace_axes,diagonal_axes",
    [((), ()), ((-1,), ()), ((), (-1,))],
)
def test_split_matches_reference_and_all_pairs(n, trace_axes, diagonal_axes):
    c = zoo.relu_fcn(np.float64, n1=n, seed=n)
    kernel_fn = ntk.ntk_fn(
        c.f, method="ntk_vector_products", trace_axes=trace_axes, diagonal_axes=diagonal_axes
    )
    got = kernel_fn(c.x1, None, c.params)
    assert_close(got, zoo.case_reference(c, trace_axes, diagonal_axes, itself=True), np.float64)
    fresh = ntk.ntk_fn(
        c.f, method="ntk_vector_products", trace_axes=trace_axes, diagonal_axes=diagonal_axes
    )
    np.testing.assert_allclose(got, _all_pairs(fresh, c.x1, None, c.params), rtol=1e-12)


@pytest.mark.parametrize(
    "name", ["pytrees", "cnn_stride2", "transformer_block", "multi_axis_output"]
)
def test_split_on_pytrees_convolutions_and_token_axes(name):
    c = CASES[name]
    x = jax.tree.map(lambda a: jnp.concatenate([a, a[::-1] * 0.5, a[:1] + 1.0]), c.x1)
    c = dataclasses.replace(c, x1=x)
    got = ntk.ntk_fn(c.f, method="ntk_vector_products", vmap_axes=c.vmap_axes)(x, None, c.params)
    assert_close(got, zoo.case_reference(c, itself=True), np.float64)


def test_split_with_a_later_output_batch_axis_and_an_unbatched_input():
    """vmap_axes=({"a": 0, "s": None}, 1): the batch axis is the output's second."""
    keys = jax.random.split(jax.random.PRNGKey(3), 4)
    p = {"w": jax.random.normal(keys[0], (3, 4)), "v": jax.random.normal(keys[1], (4, 3))}
    x = {"a": jax.random.normal(keys[2], (7, 3)), "s": jax.random.normal(keys[3], (4,))}

    def f(p, x):
        h = jnp.tanh(x["a"] @ p["w"] + x["s"])
        return jnp.stack([h @ p["v"], (h**2) @ p["v"]], axis=0)  # (2, N, 3)

    p, x = jax.tree.map(lambda a: np.asarray(a, np.float64), (p, x))
    got = ntk.ntk_fn(f, method="ntk_vector_products", vmap_axes=({"a": 0, "s": None}, 1))(
        x, None, p
    )
    assert_close(got, zoo.reference_kernel(f, p, x, None), np.float64)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 8, 33])
@pytest.mark.parametrize("k", [1, 2, 4, 40])
def test_groups_partition_the_examples(n, k):
    groups = _vector_products._groups(n, k)
    assert len(groups) == min(n, k)
    assert groups[0][0] == 0 and groups[-1][1] == n
    assert all(a < b for a, b in groups)
    assert all(groups[i][1] == groups[i + 1][0] for i in range(len(groups) - 1))


def test_group_count_weighs_saved_products_against_compile_time():
    count = _vector_products.group_count
    # little work per equation of f: splitting would cost more compile time than it saves
    assert count(8, 10, 5.3e8, 1172, "cpu") == 1  # vit-small 32x32, O=10
    assert count(8, 16, 1.7e7, 19, "cpu") == 1  # FCN W=1024, O=16
    # convolutions: many FLOPs per equation
    assert count(8, 10, 1.48e8, 17, "cpu") == 2  # CNN W=64, O=10 (17 equations under vmap)
    assert count(4, 1000, 1.0e10, 1172, "cpu") == _vector_products.SYMMETRIC_GROUPS  # ViT-S/16
    assert count(2, 1000, 1.0e10, 1172, "cpu") == 2  # never more groups than examples
    assert count(8, 10, 1.48e8, 17, "gpu") == 1  # a faster backend saves less time
