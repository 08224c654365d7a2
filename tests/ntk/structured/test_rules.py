"""Every structure rule against ``jax.jacfwd`` of its primitive, and every rule has a case here.

A case is a function whose jaxpr holds the primitive applied to the function's arguments, the
arguments, and which operand is the parameter. The rule's factored ``∂y/∂θ`` is materialized
with :func:`apply` and compared with the dense Jacobian of the primitive.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from ntknas.ntk.structured import _ir, _structure
from ntknas.ntk.structured.rules import RULES


def _rand(shape, seed, dtype=jnp.float64):
    return jax.random.normal(jax.random.PRNGKey(seed), shape, dtype)


def _conv(dn, stride=(1, 1), padding="SAME", rhs_dil=(1, 1), lhs_dil=(1, 1), groups=1):
    def fn(x, w):
        return lax.conv_general_dilated(
            x,
            w,
            stride,
            padding,
            lhs_dilation=lhs_dil,
            rhs_dilation=rhs_dil,
            dimension_numbers=dn,
            feature_group_count=groups,
        )

    return fn


def _fanin(a, b):
    return jax.linear_transpose(lambda t: (t, t), a)((a, b))[0]


# name -> list of (fn, args, index of the parameter operand)
CASES = {
    "dot_general": [
        (lambda x, w: x @ w, (_rand((4, 3), 0), _rand((3, 5), 1)), 1),
        (lambda w, x: w @ x, (_rand((4, 3), 0), _rand((3, 5), 1)), 0),
        (
            lambda x, w: jnp.einsum("bij,bjk->bik", x, w),
            (_rand((2, 4, 3), 0), _rand((2, 3, 5), 1)),
            1,
        ),
        (lambda x, w: jnp.einsum("ij,kj->ik", x, w), (_rand((4, 3), 0), _rand((5, 3), 1)), 1),
        (lambda x, w: jnp.einsum("tk,khd->thd", x, w), (_rand((4, 3), 0), _rand((3, 2, 5), 1)), 1),
    ],
    "conv_general_dilated": [
        (_conv(("NHWC", "HWIO", "NHWC")), (_rand((2, 6, 5, 3), 0), _rand((3, 3, 3, 4), 1)), 1),
        (
            _conv(("NHWC", "HWIO", "NHWC"), stride=(2, 1), rhs_dil=(1, 2), padding="VALID"),
            (_rand((1, 7, 8, 2), 0), _rand((3, 2, 2, 3), 1)),
            1,
        ),
        (
            _conv(("NHWC", "HWIO", "NHWC"), groups=2),
            (_rand((1, 5, 5, 4), 0), _rand((3, 3, 2, 6), 1)),
            1,
        ),
        (  # depthwise
            _conv(("NHWC", "HWIO", "NHWC"), groups=3, stride=(2, 2)),
            (_rand((1, 6, 6, 3), 0), _rand((3, 3, 1, 3), 1)),
            1,
        ),
        (
            _conv(("NCHW", "OIHW", "NCHW"), padding=((1, 0), (2, 1)), groups=2),
            (_rand((2, 4, 5, 5), 0), _rand((6, 2, 2, 3), 1)),
            1,
        ),
        (
            lambda x, w: lax.conv_general_dilated(
                x, w, (1,), ((1, 2),), lhs_dilation=(2,), dimension_numbers=("NWC", "WIO", "NWC")
            ),
            (_rand((1, 5, 2), 0), _rand((3, 2, 3), 1)),
            1,
        ),
        (  # patch embedding: stride == window, the input not a multiple of it (cropped)
            _conv(("NHWC", "HWIO", "NHWC"), stride=(2, 3), padding="VALID"),
            (_rand((2, 7, 9, 2), 0), _rand((2, 3, 2, 4), 1)),
            1,
        ),
        (  # stride == window with padding, channels first, groups
            _conv(("NCHW", "OIHW", "NCHW"), stride=(2, 2), padding=((1, 0), (0, 1)), groups=2),
            (_rand((1, 4, 5, 5), 0), _rand((4, 2, 2, 2), 1)),
            1,
        ),
        (  # the input as the parameter: no rule, dense fallback must still be right
            _conv(("NHWC", "HWIO", "NHWC")),
            (_rand((1, 4, 4, 2), 0), _rand((3, 3, 2, 2), 1)),
            0,
        ),
    ],
    "mul": [
        (lambda c, t: c * t, (_rand((3, 4), 0), _rand((3, 4), 1)), 1),
        # size-1 axes broadcast by the primitive itself (Flax BatchNorm's (1, 1, 1, C) scale)
        (lambda c, t: lax.mul(c, t), (_rand((2, 3, 4), 0), _rand((1, 1, 4), 1)), 1),
        (lambda c, t: lax.mul(c, t), (_rand((1, 3, 1), 0), _rand((2, 1, 4), 1)), 1),
        (lambda t: t * 2.5, (_rand((3, 4), 1),), 0),
    ],
    "div": [(lambda t, c: t / c, (_rand((3, 4), 0), _rand((3, 4), 1) + 3.0), 0)],
    "neg": [(lambda t: -t, (_rand((3, 4), 0),), 0)],
    "add": [
        (lambda a, t: a + t, (_rand((3,), 0), _rand((3,), 1)), 1),
        (lambda a, t: lax.add(a, t), (_rand((2, 3, 4), 0), _rand((1, 3, 1), 1)), 1),
    ],
    "add_any": [(_fanin, (_rand((3, 2), 0), _rand((3, 2), 1)), 0)],
    "sub": [
        (lambda a, t: a - t, (_rand((3,), 0), _rand((3,), 1)), 1),
        (lambda t, a: t - a, (_rand((3,), 0), _rand((3,), 1)), 0),
    ],
    "convert_element_type": [(lambda t: t.astype(jnp.float32), (_rand((3, 2), 0),), 0)],
    "copy": [(lambda t: jnp.array(t, copy=True), (_rand((3, 2), 0),), 0)],
    "select_n": [
        (
            lambda p, a, t: lax.select_n(p, a, t),
            (_rand((4,), 0) > 0, _rand((4,), 1), _rand((4,), 2)),
            2,
        ),
        (
            lambda p, t, a: lax.select_n(p, t, a),
            (_rand((4,), 0) > 0, _rand((4,), 1), _rand((4,), 2)),
            1,
        ),
    ],
    "broadcast_in_dim": [
        (lambda t: jnp.broadcast_to(t, (5, 3)), (_rand((3,), 0),), 0),
        (lambda t: jnp.broadcast_to(t, (2, 4, 3)), (_rand((4, 1), 0),), 0),
        (lambda t: jnp.expand_dims(t, 1), (_rand((3,), 0),), 0),
    ],
    "reshape": [(lambda t: t.reshape(6, 2), (_rand((3, 4), 0),), 0)],
    "transpose": [(lambda t: t.transpose(2, 0, 1), (_rand((2, 3, 4), 0),), 0)],
    "squeeze": [(lambda t: jnp.squeeze(t, (0, 2)), (_rand((1, 3, 1, 2), 0),), 0)],
    "reduce_sum": [(lambda t: t.sum(axis=(0, 2)), (_rand((2, 3, 4), 0),), 0)],
    "rev": [(lambda t: lax.rev(t, (1,)), (_rand((2, 3), 0),), 0)],
    "slice": [(lambda t: t[1:4:2, 1:], (_rand((5, 3), 0),), 0)],
    "dynamic_slice": [
        (lambda t, i: lax.dynamic_slice(t, (i, 0), (2, 3)), (_rand((5, 3), 0), jnp.asarray(2)), 0),
        (lambda t, i: lax.dynamic_slice(t, (i, 1), (2, 2)), (_rand((5, 3), 0), jnp.asarray(9)), 0),
    ],
    "concatenate": [
        (lambda a, t: jnp.concatenate([a, t], 1), (_rand((2, 3), 0), _rand((2, 4), 1)), 1),
        (lambda t, a: jnp.concatenate([t, a], 0), (_rand((2, 3), 0), _rand((4, 3), 1)), 0),
    ],
    "pad": [
        (lambda t: lax.pad(t, 0.0, ((1, 2, 1), (0, -1, 0))), (_rand((3, 4), 0),), 0),
        (lambda t, v: lax.pad(t, v, ((1, 2, 0), (0, 0, 0))), (_rand((3, 4), 0), _rand((), 1)), 1),
    ],
    "reduce_window_sum": [
        (
            lambda t: lax.reduce_window(t, 0.0, lax.add, (1, 2, 3, 1), (1, 2, 1, 1), "SAME"),
            (_rand((2, 5, 6, 3), 0),),
            0,
        ),
        (
            lambda t: lax.reduce_window(
                t,
                0.0,
                lax.add,
                (2, 2),
                (1, 1),
                "VALID",
                base_dilation=(2, 1),
                window_dilation=(1, 2),
            ),
            (_rand((4, 6), 0),),
            0,
        ),
    ],
}


def _eqn_and_values(name, fn, args):
    closed = jax.make_jaxpr(fn)(*args)
    prog = _ir.flatten(closed)
    env = dict(zip(prog.invars, args, strict=True))
    eqns = [e for e in prog.eqns if e.name == name]
    assert eqns, f"no {name} in {closed}"
    eqn = eqns[0]
    for e in prog.eqns:  # evaluate what precedes the primitive (e.g. index arithmetic)
        if e is eqn:
            break
        env.update(zip(e.outvars, _ir.bind(e, [_ir.read(env, a) for a in e.invars]), strict=True))
    return eqn, [_ir.read(env, a) for a in eqn.invars]


def _check(name, fn, args, idx, use_rule: bool):
    eqn, vals = _eqn_and_values(name, fn, args)
    invals = [None if k == idx else v for k, v in enumerate(vals)]
    rule = RULES[name] if use_rule else None
    s = rule(eqn, idx, 0, invals) if rule else None
    if s is not None:  # the interpreter would drop a rule that does not fit its shapes
        assert s.mismatch(eqn.outvars[0].shape, eqn.invars[idx].shape) is None
    if s is None:
        s = _structure.dense(eqn, idx, 0, invals)
    y_shape = eqn.outvars[0].shape

    def prim(t):
        return _ir.bind(eqn, [t if k == idx else v for k, v in enumerate(vals)])[0]

    theta = vals[idx]
    want = jax.jacfwd(prim)(theta)
    got = jax.jacfwd(lambda t: _structure.apply(s, t, y_shape))(theta)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, atol=1e-6)
    return s


@pytest.mark.parametrize(
    "name,fn,args,idx",
    [(name, *case) for name, cases in CASES.items() for case in cases],
    ids=[f"{name}-{i}" for name, cases in CASES.items() for i in range(len(cases))],
)
def test_rule_matches_jacfwd(name, fn, args, idx):
    _check(name, fn, args, idx, use_rule=True)


@pytest.mark.parametrize("name", ["dot_general", "conv_general_dilated", "mul", "pad"])
def test_dense_rule_matches_jacfwd(name):
    for fn, args, idx in CASES[name]:
        _check(name, fn, args, idx, use_rule=False)


def test_every_registered_rule_has_a_case():
    missing = set(RULES) - set(CASES)
    assert not missing, f"registered rules without a test case: {sorted(missing)}"


def test_structured_rules_are_smaller_than_dense():
    """The point of the rules: dot_general's factor is x, not the (y, θ) Jacobian."""
    fn, args, idx = CASES["dot_general"][0]
    s = _check("dot_general", fn, args, idx, use_rule=True)
    assert [a.shape for a, _ in s.factors] == [(4, 3)]
    fn, args, idx = CASES["broadcast_in_dim"][0]
    assert _check("broadcast_in_dim", fn, args, idx, use_rule=True).factors == ()


def test_structure_that_does_not_fit_is_detected():
    """A size-1 θ axis given a size-N y axis's id (block-diagonal instead of tiled) would be
    broadcast silently by einsum; ``mismatch`` names it, and the interpreter then goes dense."""
    wrong = _structure.Structure((0, 1), (0, 1))
    assert "sizes 3 and 1" in wrong.mismatch((3, 4), (1, 4))
    assert _structure.Structure((0, 1), (2, 1)).mismatch((3, 4), (1, 4)) is None
    factor = _structure.Structure((0,), (1,), ((jnp.ones((3, 5)), (0, 1)),))
    assert factor.mismatch((3,), (5,)) is None
    assert factor.mismatch((3,), (4,)) is not None
