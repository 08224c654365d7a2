"""NAS-Bench-201: the cell DAG follows ../shared/data/README.md; all-`none` cells cut the input."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from search_spaces import get_space
from search_spaces.nb201 import Cell, arch_str


def _avg_pool_3x3(x):
    """AvgPool2d(3, stride 1, padding 1, count_include_pad=False) on (N, H, W, C), in numpy."""
    n, h, w, c = x.shape
    out = np.zeros_like(x)
    for i, j in itertools.product(range(h), range(w)):
        window = x[:, max(i - 1, 0) : i + 2, max(j - 1, 0) : j + 2, :]
        out[:, i, j, :] = window.mean(axis=(1, 2))
    return out


def _reference_cell(cell, x):
    """README: nodes 1 (input)..4 (output); digit i is the op on edge i of
    (1→2), (1→3), (1→4), (2→3), (2→4), (3→4); codes 0 skip, 1 none, 4 avg_pool_3x3."""
    op = {"0": lambda v: v, "1": np.zeros_like, "4": _avg_pool_3x3}
    e12, e13, e14, e23, e24, e34 = (op[d] for d in cell)
    n1 = x
    n2 = e12(n1)
    n3 = e13(n1) + e23(n2)
    return e14(n1) + e24(n2) + e34(n3)


OPS = {"0": "skip_connect", "1": "none", "4": "avg_pool_3x3"}
RNG = np.random.default_rng(0)
# Parameter-free cells (skip/none/avg_pool) in which the edge order is visible, plus random ones.
CELLS = ["011111", "101111", "110111", "111011", "111101", "111110", "401440", "044104"] + [
    "".join(RNG.choice(list("014"), 6)) for _ in range(6)
]


@pytest.mark.parametrize("cell", CELLS)
def test_cell_follows_readme_edge_order(cell):
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (2, 5, 6, 3), jnp.float64))
    module = Cell(tuple(OPS[d] for d in cell))
    out = module.apply({}, jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(out), _reference_cell(cell, x), rtol=1e-12, atol=1e-12)


def test_cell_conv_edges_are_where_the_readme_puts_them():
    """A conv on edge (2→4) gets parameters named for that edge, and only there."""
    module = Cell(("skip_connect", "none", "none", "none", "nor_conv_3x3", "nor_conv_1x1"))
    variables = module.init(jax.random.PRNGKey(0), jnp.ones((1, 4, 4, 8)))
    assert set(variables["params"]) == {"edge24", "edge34"}
    assert variables["params"]["edge24"]["Conv_0"]["kernel"].shape == (3, 3, 8, 8)
    assert variables["params"]["edge34"]["Conv_0"]["kernel"].shape == (1, 1, 8, 8)


def _outputs(cell, xs, train, perturb=0.0):
    module = get_space("nb201").build({"cell": cell}, input_shape=xs[0].shape[1:])
    variables = module.init(jax.random.PRNGKey(0), xs[0])
    if perturb:  # move every parameter away from its initial value (BN biases included)
        leaves, tree = jax.tree.flatten(variables["params"])
        keys = jax.random.split(jax.random.PRNGKey(7), len(leaves))
        noisy = [p + perturb * jax.random.normal(k, p.shape, p.dtype) for p, k in zip(leaves, keys)]
        variables = dict(variables, params=jax.tree.unflatten(tree, noisy))
    apply = jax.jit(module.apply, static_argnames=("train", "mutable"))
    if train:
        return [
            np.asarray(apply(variables, x, train=True, mutable=("batch_stats",))[0]) for x in xs
        ]
    return [np.asarray(apply(variables, x)) for x in xs]


@pytest.mark.parametrize("train", [False, True])
def test_all_none_cell_makes_output_independent_of_input(train):
    xs = [jax.random.normal(jax.random.PRNGKey(i), (3, 16, 16, 3), jnp.float32) for i in (1, 2)]
    a, b = _outputs("111111", xs, train, perturb=0.1)
    assert np.all(np.isfinite(a))
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    # the same network with a skip edge somewhere on a path 1→4 does see the input
    a, b = _outputs("110111", xs, train, perturb=0.1)
    assert not np.allclose(a, b)


def test_only_a_path_from_input_to_output_matters():
    """With README's edge order, a skip on (2→3) alone leaves node 4 cut off from the input."""
    xs = [jax.random.normal(jax.random.PRNGKey(i), (2, 16, 16, 3), jnp.float32) for i in (1, 2)]
    a, b = _outputs("111011", xs, train=False, perturb=0.1)  # only edge 3 = (2→3) is skip
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_arch_str_round_trip_and_known_example():
    space = get_space("nb201")
    # (1→2) conv3x3, (1→3) none, (1→4) avg_pool, (2→3) skip, (2→4) conv1x1, (3→4) none
    text = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|"
    assert arch_str("214031") == text
    assert space.validate({"cell": text}) == {"cell": "214031"}
    for config in itertools.islice(space.enumerate(), 0, 15625, 997):
        assert space.validate({"cell": arch_str(config["cell"])}) == config
    with pytest.raises(ValueError, match="does not name all six edges"):
        space.validate({"cell": "|none~0|+|none~0|none~1|+|none~0|none~1|none~1|"})
    with pytest.raises(ValueError, match="bad edge 'conv~0'"):
        space.validate({"cell": "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|"})


def test_enumeration_order_and_describe():
    space = get_space("nb201")
    cells = [c["cell"] for c in space.enumerate()]
    assert cells[0] == "000000" and cells[-1] == "444444" and len(set(cells)) == 15_625
    assert space.describe({"cell": "214031"}) == "214031 (c3 none avg skip c1 none)"


def test_flat_trial_params_use_op_names():
    space = get_space("nb201")
    params = {f"edge_{e}": op for e, op in enumerate(["nor_conv_3x3"] * 5 + ["avg_pool_3x3"])}
    assert space.validate(params) == {"cell": "222224"}
    with pytest.raises(ValueError, match="edge_5='conv'.*avg_pool_3x3"):
        space.validate(dict(params, edge_5="conv"))
    with pytest.raises(ValueError, match="not both"):
        space.validate(dict(params, cell="000000"))
    with pytest.raises(ValueError, match="need 6 edges, got 5"):
        space.validate({k: v for k, v in params.items() if k != "edge_5"})
