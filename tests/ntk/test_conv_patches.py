"""Convolutions with patch-contraction kernel derivatives (JC and NTK-VP on CPU): the same values
and derivatives as JAX's own rules, in float64, for every convolution parameterization."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntknas.ntk import _conv_patches

# (lhs shape, rhs shape, conv keyword arguments); shapes follow the dimension numbers
CONVS = {
    "nhwc-same": (
        (2, 7, 6, 3),
        (3, 3, 3, 4),
        dict(window_strides=(1, 1), padding="SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")),
    ),
    "nchw-valid-stride": ((2, 3, 9, 8), (4, 3, 3, 2), dict(window_strides=(2, 3), padding="VALID")),
    "mixed-layouts": (
        (2, 6, 5, 3),
        (4, 3, 2, 3),
        dict(
            window_strides=(1, 2),
            padding=((1, 0), (0, 2)),
            rhs_dilation=(1, 2),
            dimension_numbers=("NHWC", "OIHW", "NCHW"),
        ),
    ),
    "transposed": (
        (2, 5, 4, 3),
        (3, 3, 3, 2),
        dict(
            window_strides=(1, 1),
            padding=((2, 2), (1, 2)),
            lhs_dilation=(2, 2),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        ),
    ),
    "1d": (
        (3, 11, 2),
        (5, 2, 4),
        dict(window_strides=(2,), padding="SAME", dimension_numbers=("NWC", "WIO", "NWC")),
    ),
    "3d": (
        (2, 4, 5, 3, 2),
        (2, 3, 2, 2, 3),
        dict(
            window_strides=(1, 1, 1), padding="VALID", dimension_numbers=("NDHWC", "DHWIO", "NDHWC")
        ),
    ),
}


def _case(name):
    lhs_shape, rhs_shape, kw = CONVS[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    params = {
        "w": rng.standard_normal(rhs_shape),
        "b": rng.standard_normal(3),
    }
    x = rng.standard_normal(lhs_shape)

    def f(p, x):
        y = jax.lax.conv_general_dilated(x * 1.5, p["w"], **kw)
        y = jnp.tanh(y)  # a nonlinearity after the conv: the derivative sees its primal value
        return y.reshape(y.shape[0], -1)[:, :3] @ jnp.diag(p["b"])

    return f, params, x


def _max_diff(a, b):
    return max(
        float(np.max(np.abs(np.asarray(u) - np.asarray(v))))
        for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


@pytest.mark.parametrize("name", sorted(CONVS))
def test_values_and_derivatives_match_jax(name):
    f, params, x = _case(name)
    g = _conv_patches.patch_convs(f)
    assert _conv_patches.count(f, params, x) == 1
    assert _max_diff(g(params, x), f(params, x)) == 0.0
    scale = max(float(np.max(np.abs(a))) for a in jax.tree.leaves(jax.jacrev(f)(params, x)))
    assert scale > 0
    for jac in (jax.jacrev, jax.jacfwd):
        for argnums in (0, 1):
            want = jac(f, argnums)(params, x)
            got = jac(g, argnums)(params, x)
            assert _max_diff(got, want) < 1e-12 * max(scale, 1.0), (jac.__name__, argnums)


def test_per_example_weight_cotangent_is_a_matmul():
    """Under vmap over examples, JAX's kernel transpose is a grouped convolution; the rewrite
    computes it without one (that grouped convolution is what XLA CPU runs slowly)."""
    f, params, x = _case("nhwc-same")

    def per_example(fn):
        def one(xi):
            _, vjp = jax.vjp(lambda p: fn(p, xi[None])[0], params)
            return jax.vmap(vjp)(jnp.eye(3))[0]

        return jax.vmap(one)

    def grouped(fn):
        text = str(jax.make_jaxpr(per_example(fn))(x))
        return [line for line in text.splitlines() if "feature_group_count=2" in line]

    assert grouped(f), "the plain rule should batch into a grouped convolution"
    assert not grouped(_conv_patches.patch_convs(f))
    assert _max_diff(per_example(_conv_patches.patch_convs(f))(x), per_example(f)(x)) < 1e-12


def test_grouped_convolutions_are_left_alone():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 3, 2, 4))
    x = rng.standard_normal((2, 5, 5, 4))

    def f(p, x):
        return jax.lax.conv_general_dilated(
            x,
            p,
            (1, 1),
            "SAME",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=2,
        ).sum(axis=(1, 2))

    assert _conv_patches.count(f, w, x) == 0
    assert _max_diff(jax.jacrev(_conv_patches.patch_convs(f))(w, x), jax.jacrev(f)(w, x)) == 0.0


def test_custom_derivative_rules_survive():
    """A custom_jvp around the conv's output keeps its own rule (it is not inlined)."""

    @jax.custom_jvp
    def clip_grad(y):
        return y

    @clip_grad.defjvp
    def _(primals, tangents):
        return primals[0], 3.0 * tangents[0]  # deliberately not the body's derivative

    f, params, x = _case("nhwc-same")

    def h(p, x):
        return clip_grad(f(p, x))

    want = jax.tree.map(lambda a: 3.0 * a, jax.jacrev(f)(params, x))
    got = jax.jacrev(_conv_patches.patch_convs(h))(params, x)
    assert _max_diff(got, want) < 1e-10


def test_other_backends_get_f_untouched(monkeypatch):
    f, _, _ = _case("nhwc-same")
    monkeypatch.setattr(_conv_patches, "ENABLED_BACKENDS", frozenset({"gpu"}))
    assert _conv_patches.patch_convs(f) is f
