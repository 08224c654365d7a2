"""Per-block kernels (``param_blocks=``): each block's kernel against the float64 reference from
explicit Jacobians restricted to the block's parameters, and the blocks summing to the full
kernel, for every method on several architectures, a small AutoFormer ViT and its masked graph."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntknas import ntk
from search_spaces.vit import param_block as vit_block

from .._tiny_vit import tiny_vit
from . import zoo
from .test_methods import assert_close

METHODS = ["jacobian_contraction", "ntk_vector_products", "structured_derivatives", "auto"]
CASES = {c.name: c for c in zoo.all_cases(np.float64)}


def reference_blocks(f, params, x1, x2, name_of, jit=False):
    """{block: Σ over the block's leaves of J_leaf(x1) J_leaf(x2)ᵀ}, and the full kernel from
    the same Jacobians (zoo's reference), whole-batch jacrev, numpy; ``jit``: each Jacobian one
    compiled program (the ViTs: eager, each of their ops compiles)."""
    to64 = lambda t: jax.tree.map(lambda a: np.asarray(a, np.float64), t)  # noqa: E731
    params, x1 = to64(params), to64(x1)
    x2 = x1 if x2 is None else to64(x2)
    o1, o2 = f(params, x1), f(params, x2)
    jac = (lambda g: jax.jit(jax.jacrev(g))) if jit else jax.jacrev
    j1 = jac(lambda p: f(p, x1))(params)
    j2 = jac(lambda p: f(p, x2))(params)
    paths = [ntk.path_keys(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    out = {}
    for path, a, b in zip(paths, jax.tree.leaves(j1), jax.tree.leaves(j2), strict=True):
        m = np.asarray(a).reshape(o1.size, -1) @ np.asarray(b).reshape(o2.size, -1).T
        k = m.reshape(o1.shape + o2.shape).transpose(0, 2, 1, 3)  # (N1, N2, O, O)
        out[name_of(path)] = out.get(name_of(path), 0) + k
    return out, zoo.jacobian_kernel(o1, o2, j1, j2)


def by_first_key(path):
    return str(path[0])


CASE_BLOCKS = [
    ("relu_fcn", by_first_key),  # a list: one block per layer
    ("fcn_bias_tanh", {"weights": lambda p: p[0].startswith("w"), "other": lambda p: True}),
    ("weight_sharing", by_first_key),  # one matrix used twice
    ("cnn_stride2", by_first_key),
    ("transformer_block", by_first_key),
    ("batch_coupled", by_first_key),  # vmap_axes=None
]


def _reference(c, rule, jit):
    name_of = rule if callable(rule) else lambda p: next(n for n, q in rule.items() if q(p))
    return reference_blocks(c.f, c.params, c.x1, c.x2, name_of, jit)


def _check(c, method, rule, reference):
    """``reference``: ``_reference(c, rule, ...)``."""
    kernel_fn = ntk.ntk_fn(c.f, method=method, vmap_axes=c.vmap_axes, param_blocks=rule)
    got = kernel_fn(c.x1, c.x2, c.params)
    want, full = reference
    assert sorted(got) == sorted(want) and len(want) > 1
    for name in want:
        assert_close(got[name], want[name], np.float64)
    assert_close(sum(got.values()), full, np.float64)
    return got


_ZOO_REFERENCES: dict = {}  # case name -> its reference_blocks, shared by every method


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name,rule", CASE_BLOCKS, ids=[n for n, _ in CASE_BLOCKS])
def test_blocks_match_the_reference_and_sum_to_the_kernel(method, name, rule):
    if name not in _ZOO_REFERENCES:
        _ZOO_REFERENCES[name] = _reference(CASES[name], rule, jit=True)
    _check(CASES[name], method, rule, _ZOO_REFERENCES[name])


@pytest.mark.parametrize("name", ["weight_sharing"])  # one matrix used twice
def test_structured_derivatives_take_every_block_from_one_pass(name, monkeypatch):
    """Structured derivatives sum their pairs of terms per block (one linearization and backward
    pass), never the kernel-per-block route of the other methods; x2 given and x2=None."""
    from ntknas.ntk import _param_blocks

    def per_block_route(*args, **kwargs):
        raise AssertionError("structured derivatives took a kernel per block")

    monkeypatch.setattr(_param_blocks, "block_kernels", per_block_route)
    for c in (CASES[name], zoo.Case(name, CASES[name].f, CASES[name].params, CASES[name].x1, None)):
        c = dataclasses.replace(c, vmap_axes=CASES[name].vmap_axes)
        _check(c, "structured_derivatives", by_first_key, _reference(c, by_first_key, jit=True))


def _images(seed, n):
    return jax.random.normal(jax.random.PRNGKey(seed), (n, 8, 8, 3), jnp.float64)


# NTK-vector products on the ViT with -m slow (about 100 s); the default suite checks that method's
# blocks on the zoo's transformer block, and the ViT's blocks by structured derivatives
@pytest.mark.parametrize(
    "method",
    [pytest.param("ntk_vector_products", marks=pytest.mark.slow), "structured_derivatives"],
)
def test_vit_blocks(method):
    _, module = tiny_vit()
    # random, not initial, values (only the init's shapes): zero biases would hide a wrong rule
    params = jax.eval_shape(module.init, jax.random.PRNGKey(0), _images(1, 1))["params"]
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(2), len(leaves))
    params = jax.tree.unflatten(
        tree, [0.3 * jax.random.normal(k, a.shape, jnp.float64) for k, a in zip(keys, leaves)]
    )
    c = zoo.Case("vit", lambda p, x: module.apply({"params": p}, x), params, _images(3, 3), None)
    # ntk_fn(f, method, param_blocks=vit_block)
    got = _check(c, method, vit_block, _reference(c, vit_block, jit=True))
    assert sorted(got) == ["attention", "embedding", "head", "mlp", "norm"]


def test_masked_vit_graph_blocks():
    from search_spaces._vit_masked import SharedViT

    variant, _ = tiny_vit()
    module = SharedViT(
        max_embed=8,
        max_depth=3,
        max_heads=2,
        max_hidden=16,
        patch_size=4,
        num_classes=3,
        variant=variant,
    )
    arch = jnp.asarray([6, 2, 2, 1, 0, 12, 9, 0], jnp.float64)  # embed 6, depth 2 of 3
    params = jax.eval_shape(module.init, jax.random.PRNGKey(0), _images(1, 1), arch)["params"]
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(4), len(leaves))
    params = jax.tree.unflatten(
        tree, [0.3 * jax.random.normal(k, a.shape, jnp.float64) for k, a in zip(keys, leaves)]
    )
    c = zoo.Case(
        "masked_vit",
        lambda p, xs: module.apply({"params": p}, xs[0], xs[1]),
        params,
        (_images(5, 2), arch),
        (_images(6, 3), arch),
        vmap_axes=((0, None), 0),
    )
    _check(c, "structured_derivatives", vit_block, _reference(c, vit_block, jit=True))


def test_bad_groupings_name_the_problem():
    c = CASES["fcn_bias_tanh"]
    with pytest.raises(ValueError, match="no block"):
        ntk.ntk_fn(c.f, param_blocks={"w": lambda p: p[0].startswith("w")})(c.x1, c.x2, c.params)
    with pytest.raises(ValueError, match="hold no parameter"):
        rule = {"none": lambda p: False, "all": lambda p: True}
        ntk.ntk_fn(c.f, param_blocks=rule)(c.x1, c.x2, c.params)
    with pytest.raises(ValueError, match="param_blocks"):
        ntk.ntk_fn(c.f, param_blocks=3)
    with pytest.raises(ValueError, match="block names are str"):
        ntk.ntk_fn(c.f, param_blocks=lambda p: 1)(c.x1, c.x2, c.params)
    with pytest.raises(ValueError, match="no ViT block"):
        vit_block(("w1",))
