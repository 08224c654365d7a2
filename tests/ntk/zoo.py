"""Test functions f(params, x) for the NTK engine: a zoo of architectures with random params.

Each entry builds (f, params, x1, x2) in a given dtype, with randomized inputs (never zeros).
Shapes are kept small so float64 references from explicit Jacobians stay cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np


@dataclass(frozen=True)
class Case:
    name: str
    f: Callable
    params: object
    x1: object
    x2: object
    vmap_axes: object = 0


def _normal(key, shape, dtype, scale=1.0):
    return (scale * jax.random.normal(key, shape)).astype(dtype)


def _keys(seed, n):
    return list(jax.random.split(jax.random.PRNGKey(seed), n))


# --- fully connected ---------------------------------------------------------------------------


def relu_fcn(dtype, depth=5, width=16, o=4, n1=3, n2=2, din=3, seed=0):
    ks = _keys(seed, depth + 3)
    dims = [din] + [width] * (depth - 1) + [o]
    params = [
        _normal(ks[i], (dims[i], dims[i + 1]), dtype, 1 / np.sqrt(dims[i])) for i in range(depth)
    ]

    def f(p, x):
        for w in p[:-1]:
            x = jax.nn.relu(x @ w)
        return x @ p[-1]

    return Case(
        "relu_fcn", f, params, _normal(ks[-2], (n1, din), dtype), _normal(ks[-1], (n2, din), dtype)
    )


def fcn_bias_tanh(dtype):
    ks = _keys(1, 6)
    p = {
        "w1": _normal(ks[0], (5, 7), dtype, 0.5),
        "b1": _normal(ks[1], (7,), dtype),
        "w2": _normal(ks[2], (7, 3), dtype, 0.5),
        "b2": _normal(ks[3], (3,), dtype),
    }

    def f(p, x):
        return jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]

    return Case("fcn_bias_tanh", f, p, _normal(ks[4], (4, 5), dtype), _normal(ks[5], (3, 5), dtype))


def single_output(dtype):
    c = relu_fcn(dtype, depth=3, width=8, o=1, seed=2)
    return Case("single_output_O1", c.f, c.params, c.x1, c.x2)


def weight_sharing(dtype):
    """The same matrix applied twice (an RNN-like unrolled layer) plus a tied output."""
    ks = _keys(3, 4)
    p = {"w": _normal(ks[0], (6, 6), dtype, 0.4), "v": _normal(ks[1], (6, 3), dtype)}

    def f(p, x):
        h = jnp.tanh(x @ p["w"])
        h = jnp.tanh(h @ p["w"] + x)
        return h @ p["v"] + (x @ p["w"]) @ p["v"]

    return Case(
        "weight_sharing", f, p, _normal(ks[2], (3, 6), dtype), _normal(ks[3], (4, 6), dtype)
    )


def pytrees(dtype):
    """Nested pytrees for params, inputs and outputs."""
    ks = _keys(4, 8)
    p = {
        "enc": {"a": _normal(ks[0], (3, 5), dtype), "b": [_normal(ks[1], (4, 5), dtype)]},
        "heads": (_normal(ks[2], (5, 2), dtype), _normal(ks[3], (5, 3), dtype)),
    }

    def f(p, x):
        h = jnp.sin(x["u"] @ p["enc"]["a"] + x["v"][0] @ p["enc"]["b"][0])
        return {"logits": h @ p["heads"][0], "aux": [jnp.tanh(h @ p["heads"][1])]}

    x1 = {"u": _normal(ks[4], (3, 3), dtype), "v": [_normal(ks[5], (3, 4), dtype)]}
    x2 = {"u": _normal(ks[6], (2, 3), dtype), "v": [_normal(ks[7], (2, 4), dtype)]}
    return Case("pytrees", f, p, x1, x2)


# --- convolutions ------------------------------------------------------------------------------


def _conv(x, w, stride=1, dilation=1, padding="SAME", groups=1):
    return jax.lax.conv_general_dilated(
        x,
        w,
        window_strides=(stride, stride),
        padding=padding,
        rhs_dilation=(dilation, dilation),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=groups,
    )


def cnn(dtype, stride=1, dilation=1, padding="SAME", groups=1, name="cnn"):
    ks = _keys(5 + stride + 3 * dilation + groups, 6)
    cin, c = 4, 8
    p = {
        "c1": _normal(ks[0], (3, 3, cin, c), dtype, 0.3),
        "c2": _normal(ks[1], (3, 3, c // groups, c), dtype, 0.3),
        "dense": _normal(ks[2], (c, 5), dtype, 0.3),
    }

    def f(p, x):
        h = jax.nn.relu(_conv(x, p["c1"], padding=padding))
        h = jax.nn.relu(_conv(h, p["c2"], stride, dilation, padding, groups))
        return h.mean(axis=(1, 2)) @ p["dense"]

    return Case(
        name, f, p, _normal(ks[3], (2, 8, 8, cin), dtype), _normal(ks[4], (3, 8, 8, cin), dtype)
    )


def cnn_variants(dtype):
    return [
        cnn(dtype, name="cnn_same"),
        cnn(dtype, padding="VALID", name="cnn_valid"),
        cnn(dtype, stride=2, name="cnn_stride2"),
        cnn(dtype, dilation=2, name="cnn_dilation2"),
        cnn(dtype, groups=2, name="cnn_groups2"),
        cnn(dtype, groups=8, name="cnn_depthwise"),
    ]


# --- transformer -------------------------------------------------------------------------------


def _layer_norm(x, g, b, eps=1e-6):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / jnp.sqrt(v + eps) * g + b


def transformer_block(dtype, shared_qk=False):
    ks = _keys(20, 12)
    d, h, t = 8, 2, 5
    p = {
        "ln1": (1 + _normal(ks[0], (d,), dtype, 0.1), _normal(ks[1], (d,), dtype, 0.1)),
        "qkv": _normal(ks[2], (d, 3 * d), dtype, d**-0.5),
        "proj": _normal(ks[3], (d, d), dtype, d**-0.5),
        "ln2": (1 + _normal(ks[4], (d,), dtype, 0.1), _normal(ks[5], (d,), dtype, 0.1)),
        "mlp": (_normal(ks[6], (d, 2 * d), dtype, d**-0.5), _normal(ks[7], (2 * d, d), dtype, 0.3)),
        "head": _normal(ks[8], (d, 3), dtype, d**-0.5),
    }

    def f(p, x):
        y = _layer_norm(x, *p["ln1"])
        q, k, v = jnp.split(y @ p["qkv"], 3, axis=-1)
        if shared_qk:
            k = q
        split = lambda z: z.reshape(z.shape[:-1] + (h, d // h))  # noqa: E731
        q, k, v = split(q), split(k), split(v)
        att = jax.nn.softmax(jnp.einsum("ntha,nsha->nhts", q, k) / (d // h) ** 0.5, axis=-1)
        o = jnp.einsum("nhts,nsha->ntha", att, v).reshape(x.shape)
        x = x + o @ p["proj"]
        y = _layer_norm(x, *p["ln2"])
        x = x + jax.nn.gelu(y @ p["mlp"][0]) @ p["mlp"][1]
        return x.mean(axis=1) @ p["head"]

    name = "attention_shared_qk" if shared_qk else "transformer_block"
    return Case(name, f, p, _normal(ks[9], (3, t, d), dtype), _normal(ks[10], (2, t, d), dtype))


def multi_axis_output(dtype):
    """Output (N, T, O): per-token logits, for trace/diagonal over several axes."""
    ks = _keys(30, 4)
    p = {"w": _normal(ks[0], (4, 6), dtype, 0.5), "v": _normal(ks[1], (6, 3), dtype, 0.5)}

    def f(p, x):
        return jnp.tanh(x @ p["w"]) @ p["v"]

    return Case(
        "multi_axis_output",
        f,
        p,
        _normal(ks[2], (2, 5, 4), dtype),
        _normal(ks[3], (3, 5, 4), dtype),
    )


def batch_coupled(dtype):
    """Batch-statistics normalization: examples are not independent (needs vmap_axes=None)."""
    ks = _keys(40, 4)
    p = {"w": _normal(ks[0], (3, 6), dtype), "v": _normal(ks[1], (6, 2), dtype)}

    def f(p, x):
        h = x @ p["w"]
        h = (h - h.mean(0)) / jnp.sqrt(h.var(0) + 1e-3)
        return jax.nn.relu(h) @ p["v"]

    return Case(
        "batch_coupled", f, p, _normal(ks[2], (4, 3), dtype), _normal(ks[3], (5, 3), dtype), None
    )


def all_cases(dtype) -> list[Case]:
    return [
        relu_fcn(dtype),
        fcn_bias_tanh(dtype),
        single_output(dtype),
        weight_sharing(dtype),
        pytrees(dtype),
        *cnn_variants(dtype),
        transformer_block(dtype),
        transformer_block(dtype, shared_qk=True),
        multi_axis_output(dtype),
        batch_coupled(dtype),
    ]


# --- the float64 reference ---------------------------------------------------------------------


def reference_kernel(f, params, x1, x2, trace_axes=(), diagonal_axes=(), jit=False):
    """Θ from explicit whole-batch Jacobians in float64 numpy, reduced by hand.

    Does not assume examples are independent: differentiates f on the whole batch. ``jit``
    compiles each Jacobian as one program (for networks of many ops: eager, each op compiles).
    """
    tree, fulls = _full_kernel(f, params, x1, x2, jit)
    return _reduced(tree, fulls, trace_axes, diagonal_axes)


_CASE_KERNELS: dict = {}  # (id(case), itself) -> (case, full kernels); holds the case


def case_reference(case, trace_axes=(), diagonal_axes=(), itself=False):
    """``reference_kernel`` of a zoo case on its inputs (``itself``: x1 against x1), its
    Jacobians compiled as one program each and computed once per case object: every method and
    trace/diagonal reduction checked against that case reuses the same float64 kernel."""
    key = (id(case), itself)
    if key not in _CASE_KERNELS or _CASE_KERNELS[key][0] is not case:
        full = _full_kernel(case.f, case.params, case.x1, None if itself else case.x2, True)
        _CASE_KERNELS[key] = (case, full)
    tree, fulls = _CASE_KERNELS[key][1]
    return _reduced(tree, fulls, trace_axes, diagonal_axes)


def _full_kernel(f, params, x1, x2, jit):
    """The unreduced (out1..., out2...) kernel of each output leaf, and the output tree."""
    to64 = lambda t: jax.tree.map(lambda a: np.asarray(a, np.float64), t)  # noqa: E731
    params, x1 = to64(params), to64(x1)
    x2 = x1 if x2 is None else to64(x2)
    with jax.enable_x64(True) if hasattr(jax, "enable_x64") else _x64():
        jac = (lambda g: jax.jit(jax.jacrev(g))) if jit else jax.jacrev
        j1 = jac(lambda p: f(p, x1))(params)
        o1 = f(params, x1)
        j2, o2 = (j1, o1) if x2 is x1 else (jac(lambda p: f(p, x2))(params), f(params, x2))
    return _from_jacobians(o1, o2, j1, j2)


def jacobian_kernel(o1, o2, j1, j2):
    """The (unreduced) kernel from outputs ``f(params, x)`` and their ``jacrev`` trees."""
    tree, fulls = _from_jacobians(o1, o2, j1, j2)
    return _reduced(tree, fulls, (), ())


def _from_jacobians(o1, o2, j1, j2):
    fulls = []
    for leaf1, leaf2, jl1, jl2 in zip(
        jax.tree.leaves(o1),
        jax.tree.leaves(o2),
        _per_output(j1, o1),
        _per_output(j2, o2),
    ):
        m1 = np.concatenate([np.asarray(a).reshape(leaf1.size, -1) for a in jl1], axis=1)
        m2 = np.concatenate([np.asarray(a).reshape(leaf2.size, -1) for a in jl2], axis=1)
        full = (m1 @ m2.T).reshape(tuple(leaf1.shape) + tuple(leaf2.shape))
        fulls.append((full, leaf1.ndim))
    return jax.tree.structure(o1), fulls


def _reduced(tree, fulls, trace_axes, diagonal_axes):
    # a copy: a memoized kernel (case_reference) is never handed out to be changed in place
    out = [np.array(_reduce(full, d, trace_axes, diagonal_axes)) for full, d in fulls]
    return jax.tree.unflatten(tree, out)


def _per_output(jac, out):
    """Split jacrev's (output tree of param trees) into one list of param leaves per output leaf."""
    n_out = len(jax.tree.leaves(out))
    out_tree = jax.tree.structure(out)
    if n_out == 1 and out_tree == jax.tree.structure(0):
        return [jax.tree.leaves(jac)]
    subtrees = out_tree.flatten_up_to(jac)
    return [jax.tree.leaves(s) for s in subtrees]


def _reduce(full, d, trace_axes, diagonal_axes):
    """Trace/diagonal of a (s1..., s2...) array, written independently of ntknas.ntk._axes."""
    trace = sorted(a % d for a in trace_axes)
    diag = sorted(a % d for a in diagonal_axes)
    # Move to interleaved (a0, b0, a1, b1, ...) order, then handle axes from last to first.
    order = [ax for i in range(d) for ax in (i, d + i)]
    k = np.transpose(full, order)
    for i in reversed(range(d)):
        if i in trace:
            k = np.trace(k, axis1=2 * i, axis2=2 * i + 1)
        elif i in diag:
            k = np.moveaxis(np.diagonal(k, axis1=2 * i, axis2=2 * i + 1), -1, 2 * i)
    return k


class _x64:
    def __enter__(self):
        self.old = jax.config.jax_enable_x64
        jax.config.update("jax_enable_x64", True)

    def __exit__(self, *a):
        jax.config.update("jax_enable_x64", self.old)
