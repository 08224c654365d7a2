"""Structured derivatives == float64 explicit-Jacobian reference == Jacobian contraction.

Plain JAX functions covering every structure rule and the interpreter's special cases (views,
weight sharing in the same and in different views, parameters returned directly, sub-jaxprs,
custom derivatives), with pytrees, N1 != N2, x2=None, O=1, trace/diagonal axes, vmap_axes=None.
"""

import jax
import jax.numpy as jnp
import pytest
from jax import lax

from ntknas import ntk

from ._reference import assert_close, check_all


def _normal(key, shape, scale=1.0, dtype=jnp.float64):
    return scale * jax.random.normal(key, shape, dtype)


def _keys(seed, n):
    return jax.random.split(jax.random.PRNGKey(seed), n)


def fcn_relu(dtype=jnp.float64, o=3):
    k = _keys(0, 8)
    sizes = [4, 6, 5, 6, o]
    params = [
        {"w": _normal(k[i], (a, b), 1 / a**0.5, dtype), "b": _normal(k[4 + i], (b,), 0.1, dtype)}
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True))
    ]

    def f(p, x):
        for layer in p[:-1]:
            x = jax.nn.relu(x @ layer["w"] + layer["b"])
        return x @ p[-1]["w"] + p[-1]["b"]

    return f, params, (5, 4)


def cnn(padding="SAME", strides=(2, 2), dilation=(1, 1), groups=1, dtype=jnp.float64):
    k = _keys(1, 4)
    params = {
        "c1": _normal(k[0], (3, 3, 2, 4), 0.3, dtype),
        "c2": _normal(k[1], (2, 3, 4 // groups, 4), 0.3, dtype),
        "head": _normal(k[2], (4, 3), 0.5, dtype),
    }

    def f(p, x):
        dn = ("NHWC", "HWIO", "NHWC")
        h = lax.conv_general_dilated(x, p["c1"], (1, 1), "SAME", dimension_numbers=dn)
        h = jnp.tanh(h)
        h = lax.conv_general_dilated(
            h,
            p["c2"],
            strides,
            padding,
            rhs_dilation=dilation,
            dimension_numbers=dn,
            feature_group_count=groups,
        )
        return jax.nn.relu(h).mean(axis=(1, 2)) @ p["head"]

    return f, params, (3, 7, 6, 2)


def depthwise_pool_cnn():
    k = _keys(2, 3)
    params = {"dw": _normal(k[0], (3, 3, 1, 3), 0.4), "pw": _normal(k[1], (1, 1, 3, 5), 0.4)}

    def f(p, x):
        dn = ("NCHW", "HWIO", "NCHW")
        h = lax.conv_general_dilated(
            x, p["dw"], (1, 1), "SAME", dimension_numbers=dn, feature_group_count=3
        )
        h = lax.reduce_window(jnp.sin(h), 0.0, lax.add, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
        h = lax.conv_general_dilated(h, p["pw"], (1, 1), "VALID", dimension_numbers=dn)
        return h.max(axis=(2, 3))

    return f, params, (2, 3, 6, 6)


def _layer_norm(x, g, b):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / jnp.sqrt(var + 1e-5) * g + b


def transformer_block(shared_qk=False):
    d, t, heads = 4, 3, 2
    k = _keys(3, 8)
    params = {
        "ln": {"g": 1 + _normal(k[0], (d,), 0.1), "b": _normal(k[1], (d,), 0.1)},
        "qkv": _normal(k[2], (d, 3 * d), 0.5),
        "proj": _normal(k[3], (d, d), 0.5),
        "mlp": [_normal(k[4], (d, 2 * d), 0.5), _normal(k[5], (d, 2), 0.5)],
        "pos": _normal(k[6], (t, d), 0.1),
    }

    def f(p, x):
        x = x + p["pos"]
        h = _layer_norm(x, p["ln"]["g"], p["ln"]["b"])
        q, kk, v = jnp.split(h @ p["qkv"], 3, axis=-1)
        if shared_qk:
            kk = q
        q, kk, v = (a.reshape(*a.shape[:-1], heads, d // heads) for a in (q, kk, v))
        att = jax.nn.softmax(jnp.einsum("...qhc,...khc->...hqk", q, kk), axis=-1)
        o = jnp.einsum("...hqk,...khc->...qhc", att, v).reshape(x.shape)
        x = x + o @ p["proj"]
        x = x + jax.nn.gelu(x @ p["mlp"][0]) @ p["mlp"][0].T  # tied: W and Wᵀ
        return x.mean(-2) @ p["mlp"][1]

    return f, params, (3, t, d)


def shared_layer():
    """The same weight applied three times (recurrence) and through a reshape view."""
    k = _keys(4, 2)
    params = {"w": _normal(k[0], (4, 4), 0.5), "v": _normal(k[1], (2, 8), 0.5)}

    def f(p, x):
        for _ in range(3):
            x = jnp.tanh(x @ p["w"])
        return x @ p["v"].reshape(8, 2)[:4] + x @ p["w"].reshape(8, 2)[4:]

    return f, params, (4, 4)


def pytree_io():
    k = _keys(5, 4)
    params = {"a": (_normal(k[0], (3, 2)),), "b": {"c": _normal(k[1], (2,))}}

    def f(p, x):
        h = jnp.tanh(x["u"] @ p["a"][0] + p["b"]["c"]) * x["v"][:, :1]
        return {"logits": h @ jnp.ones((2, 3)), "aux": [h.sum(-1), jnp.sin(h)]}

    x_shape = {"u": (4, 3), "v": (4, 2)}
    return f, params, x_shape


def elementwise_params():
    """Parameters through div, neg, sub, mul, select, pad, concatenate, slices, reduce_sum."""
    k = _keys(6, 3)
    params = {"a": _normal(k[0], (5,)), "b": _normal(k[1], (3,)), "c": _normal(k[2], (2, 5))}

    def f(p, x):
        a = p["a"] / 3.0 - p["a"] * p["a"]
        b = jnp.concatenate([-p["b"], jnp.pad(p["b"][1:], (1, 1))])
        c = jnp.where(x > 0, p["c"].sum(0), p["a"][::-1])
        d = lax.dynamic_slice(p["c"], (1, 2), (1, 3))[0]
        return jnp.stack([x * a, x[..., :5] * b[:5], c * x, jnp.pad(d, (1, 1)) * x], -1)

    return f, params, (3, 5)


def params_out_directly():
    k = _keys(7, 2)
    params = {"w": _normal(k[0], (3, 2)), "b": _normal(k[1], (2,))}

    def f(p, x):
        return x @ p["w"] + jnp.broadcast_to(p["b"], (x.shape[0], 2)) + p["w"].T[:, 0]

    return f, params, (4, 3)


def wrapped_calls():
    """jit, checkpoint, custom_jvp and custom_vjp inside f."""

    @jax.custom_vjp
    def scale(x):
        return 2 * x

    scale.defvjp(lambda x: (2 * x, None), lambda _, g: (2 * g,))
    k = _keys(8, 2)
    params = {"w": _normal(k[0], (3, 4), 0.5), "v": _normal(k[1], (4, 2), 0.5)}

    @jax.jit
    def inner(w, x):
        return jax.checkpoint(lambda a: jax.nn.relu(a) + jax.nn.softplus(a))(x @ w)

    def f(p, x):
        return scale(inner(p["w"], x)) @ p["v"] + scale(p["v"]).sum()

    return f, params, (4, 3)


def batch_stats_cell():
    """Examples coupled through BatchNorm on batch statistics (reduce_sum over the batch axis,
    broadcast of batch means), avg pooling with padding that does not count the pad, and BN
    scale/shift shared by two layers (weight sharing across coupled terms).

    Regression: BN's scale and shift have shape (1, 1, 1, C), which ``mul``/``add`` broadcast
    without a broadcast_in_dim. The first elementwise rules gave such an axis y's id (θ block-
    diagonal along the batch instead of tiled), and einsum silently broadcast the size-1 axis:
    the NAS-Bench-201 cell 320140 on batch statistics had relative error 1.4e-3.
    """
    k = _keys(9, 4)
    params = {
        "c1": _normal(k[0], (3, 3, 2, 4), 0.4),
        "c2": _normal(k[1], (1, 1, 4, 4), 0.4),
        # (1, 1, 1, C) like Flax's BatchNorm: lax.mul/add broadcast the size-1 axes implicitly
        "bn": {"g": 1 + _normal(k[2], (1, 1, 1, 4), 0.2), "b": _normal(k[3], (1, 1, 1, 4), 0.2)},
        "head": _normal(k[3], (4, 3), 0.5),
    }
    dn = ("NHWC", "HWIO", "NHWC")

    def bn(h, q):
        mu = h.mean((0, 1, 2))
        var = ((h - mu) ** 2).mean((0, 1, 2))
        return (h - mu) * lax.rsqrt(var + 1e-5) * q["g"] + q["b"]

    def avg_pool(h):
        window, pad = (1, 3, 3, 1), ((0, 0), (1, 1), (1, 1), (0, 0))
        total = lax.reduce_window(h, 0.0, lax.add, window, (1, 1, 1, 1), pad)
        count = lax.reduce_window(jnp.ones_like(h), 0.0, lax.add, window, (1, 1, 1, 1), pad)
        return total / count

    def f(p, x):
        h = bn(lax.conv_general_dilated(x, p["c1"], (1, 1), "SAME", dimension_numbers=dn), p["bn"])
        g = lax.conv_general_dilated(jax.nn.relu(h), p["c2"], (1, 1), "SAME", dimension_numbers=dn)
        h = bn(g, p["bn"]) + avg_pool(h) + h
        return jax.nn.relu(h).mean((1, 2)) @ p["head"]

    return f, params, (3, 4, 5, 2)


CASES = {
    "fcn_relu": fcn_relu,
    "cnn_same_stride": cnn,
    "cnn_valid_dilated": lambda: cnn("VALID", (1, 1), (2, 1)),
    "cnn_groups": lambda: cnn("SAME", (1, 2), groups=2),
    "depthwise_pool": depthwise_pool_cnn,
    "transformer": transformer_block,
    "attention_shared_qk": lambda: transformer_block(shared_qk=True),
    "shared_layer": shared_layer,
    "pytree_io": pytree_io,
    "elementwise_params": elementwise_params,
    "params_out_directly": params_out_directly,
    "wrapped_calls": wrapped_calls,
}


def _inputs(x_shape, n, seed, dtype=jnp.float64):
    def one(shape, k):
        return jax.random.normal(k, (n, *shape[1:]), dtype)

    leaves, tree = jax.tree.flatten(x_shape, is_leaf=lambda s: isinstance(s, tuple))
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    return jax.tree.unflatten(tree, [one(s, k) for s, k in zip(leaves, keys, strict=True)])


@pytest.mark.parametrize("name", sorted(CASES))
def test_full_kernel_n1_ne_n2(name):
    f, params, x_shape = CASES[name]()
    check_all(f, _inputs(x_shape, 3, 10), _inputs(x_shape, 2, 11), params)


@pytest.mark.parametrize(
    "name", ["elementwise_params", "shared_layer", "cnn_groups", "wrapped_calls"]
)
def test_rules_off_agree(name):
    """The private switch: every primitive through the dense rule, no views; same kernel."""
    f, params, x_shape = CASES[name]()
    check_all(f, _inputs(x_shape, 2, 23), _inputs(x_shape, 3, 24), params, rules_off=True)


@pytest.mark.parametrize("name", ["fcn_relu", "transformer", "cnn_groups", "pytree_io"])
def test_x2_none_and_axes(name):
    f, params, x_shape = CASES[name]()
    x = _inputs(x_shape, 3, 12)
    check_all(f, x, None, params, trace_axes=(-1,))
    check_all(f, x, None, params, diagonal_axes=(-1,))


@pytest.mark.parametrize("name", ["fcn_relu", "elementwise_params", "shared_layer"])
def test_no_vmap(name):
    f, params, x_shape = CASES[name]()
    check_all(f, _inputs(x_shape, 3, 13), _inputs(x_shape, 2, 14), params, vmap_axes=None)


def test_batch_statistics_couple_examples():
    """vmap_axes=None on a function whose examples interact (BatchNorm on batch statistics);
    rules off, and each contraction route forced (per-pair structured einsum, parameter space),
    give the same kernel."""
    from ntknas.ntk.structured import _contract

    f, params, x_shape = batch_stats_cell()
    x1, x2 = _inputs(x_shape, 3, 25), _inputs(x_shape, 2, 26)
    want = check_all(f, x1, x2, params, vmap_axes=None, rules_off=True, against_jc=False)
    for route in ("structured", "leaf"):
        old, _contract.FORCE_ROUTE = _contract.FORCE_ROUTE, route
        try:
            got = ntk.ntk_fn(f, "structured_derivatives", vmap_axes=None)(x1, x2, params)
            assert_close(got, want, jnp.float64)
        finally:
            _contract.FORCE_ROUTE = old


def test_batch_axis_traced_and_diagonal():
    f, params, x_shape = fcn_relu()
    x = _inputs(x_shape, 3, 15)
    check_all(f, x, None, params, diagonal_axes=(0,))
    check_all(f, x, _inputs(x_shape, 2, 16), params, trace_axes=(-1,), diagonal_axes=())


def test_single_output():
    f, params, x_shape = fcn_relu(o=1)
    k = check_all(f, _inputs(x_shape, 3, 17), _inputs(x_shape, 4, 18), params)
    assert k.shape == (3, 4, 1, 1)


def test_batch_on_another_axis():
    f0, params, _ = fcn_relu()

    def f(p, x):  # inputs (4, N), outputs (O, N)
        return f0(p, x.T).T

    x1 = jax.random.normal(jax.random.PRNGKey(19), (4, 3))
    x2 = jax.random.normal(jax.random.PRNGKey(20), (4, 2))
    check_all(f, x1, x2, params, vmap_axes=(1, 1))


@pytest.mark.parametrize("name", ["fcn_relu", "cnn_groups"])
def test_float32(name):
    f, params, x_shape = CASES[name]() if name != "fcn_relu" else fcn_relu(jnp.float32)
    if name == "cnn_groups":
        f, params, x_shape = cnn("SAME", (1, 2), groups=2, dtype=jnp.float32)
    x1 = _inputs(x_shape, 3, 21, jnp.float32)
    x2 = _inputs(x_shape, 2, 22, jnp.float32)
    check_all(f, x1, x2, params, dtype=jnp.float32)


def test_output_independent_of_params_is_zero():
    from ntknas import ntk

    params = {"w": jnp.ones((3, 2))}
    k = ntk.ntk_fn(lambda p, x: jnp.sin(x), "structured_derivatives")(
        jnp.ones((2, 3)), None, params
    )
    assert k.shape == (2, 2, 3, 3) and not k.any()


def test_view_transpose_matches_linear_transpose():
    """The direct inverse of a view chain (reshape, transpose, squeeze, convert) equals the
    traced linear transpose it replaces."""
    from ntknas.ntk.structured import _contract, _ir

    def view(a):
        return a.reshape(2, 1, 3, 4).transpose(3, 1, 0, 2).squeeze(1).astype(jnp.float32)

    leaf = jnp.zeros((6, 4), jnp.float64)
    prog = _ir.flatten(jax.make_jaxpr(view)(leaf))
    chain = tuple((e.primitive, e.params) for e in prog.eqns)
    assert [p.name for p, _ in chain] == [
        "reshape",
        "transpose",
        "squeeze",
        "convert_element_type",
    ]
    w = jax.random.normal(jax.random.PRNGKey(27), (5, 4, 2, 3), jnp.float32)
    got = _contract._view_transpose(chain, w, (6, 4), jnp.float64)
    want = _contract._chain_transpose(chain, w, (6, 4), jnp.float64)
    assert got.shape == (5, 6, 4) and got.dtype == jnp.float64
    assert jnp.allclose(got, want)
