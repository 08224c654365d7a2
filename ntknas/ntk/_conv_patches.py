"""Convolutions whose weight derivative is an image-patches contraction, for Jacobian contraction.

Jacobian contraction differentiates ``f`` per example and per output basis vector (``vmap`` of a
VJP). JAX's transpose rule of ``conv_general_dilated`` w.r.t. its kernel is
itself a convolution; batched over examples it becomes one convolution with
``feature_group_count=N``, which XLA's CPU backend (jax 0.10) runs about 3x slower than the same
values from the image patches of each example and one batched matrix product
(``experiments/jacobian_xla_version.py``).

:func:`patch_convs` returns ``f`` with every ungrouped convolution replaced by one whose derivative
w.r.t. the kernel is ``patches(lhs) · dW`` (a ``custom_jvp``). Its transpose, the weight
cotangent, is then ``patches(lhs)ᵀ · ct``: a batched matmul under ``vmap``. The primal value and
the derivative w.r.t. the input are JAX's own. Patches are extracted at full precision (they are a
convolution with a 0/1 kernel; a TF32 or bfloat16 pass would round the input).

``f`` is traced to a jaxpr once per call; call-like sub-jaxprs (jit) are inlined, custom
derivative calls and control flow are bound as they are (a convolution inside them keeps JAX's
rule). Without an eligible convolution ``f`` runs untouched.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_derivatives import SymbolicZero

from . import _jax_compat as jc
from .structured import _ir

# Off by default outside the CPU backend: the slow grouped convolution was measured on XLA CPU
# only, and GPU convolution libraries run grouped convolutions natively.
ENABLED_BACKENDS = frozenset({"cpu"})


def _eligible(eqn: _ir.Eqn) -> bool:
    if eqn.name != "conv_general_dilated" or len(eqn.invars) != 2:
        return False
    p = eqn.params
    if p.get("feature_group_count", 1) != 1 or p.get("batch_group_count", 1) != 1:
        return False
    if p.get("preferred_element_type") is not None:
        return False
    lhs, rhs = eqn.invars
    return all(np.issubdtype(a.dtype, np.floating) for a in (lhs, rhs)) and lhs.dtype == rhs.dtype


def _weight_tangent(lhs, d_rhs, params: dict):
    """``conv(lhs, d_rhs)`` computed as the image patches of ``lhs`` times the flattened kernel."""
    lhs_spec, rhs_spec, out_spec = params["dimension_numbers"]
    # canonical layouts: lhs (N, C, *spatial), rhs (O, I, *spatial), out (N, O, *spatial)
    lhs_c = jnp.transpose(lhs, lhs_spec)
    rhs_c = jnp.transpose(d_rhs, rhs_spec)
    patches = lax.conv_general_dilated_patches(
        lhs_c,
        filter_shape=rhs_c.shape[2:],
        window_strides=params["window_strides"],
        padding=params["padding"],
        lhs_dilation=params["lhs_dilation"],
        rhs_dilation=params["rhs_dilation"],
        precision=lax.Precision.HIGHEST,
    )  # (N, C * prod(filter), *out_spatial), C-major: matches rhs_c flattened
    n, k = patches.shape[:2]
    flat = patches.reshape(n, k, -1)
    kernel = rhs_c.reshape(rhs_c.shape[0], k)
    out = jnp.einsum("nks,ok->nos", flat, kernel, precision=params.get("precision"))
    out = out.reshape((n, kernel.shape[0]) + patches.shape[2:])
    # out axis out_spec[i] holds canonical axis i
    return jnp.transpose(out, np.argsort(out_spec)).astype(lhs.dtype)


def _conv(primitive, params: dict) -> Callable:
    """The convolution ``primitive(lhs, rhs, **params)`` with the patches derivative in rhs."""

    def bind(lhs, rhs):
        return jc.bind(primitive, [lhs, rhs], params)[0]

    conv = jax.custom_jvp(bind)

    def conv_jvp(primals, tangents):
        lhs, rhs = primals
        d_lhs, d_rhs = tangents
        out = bind(lhs, rhs)
        parts = []
        if not isinstance(d_lhs, SymbolicZero):
            parts.append(bind(d_lhs, rhs))
        if not isinstance(d_rhs, SymbolicZero):
            parts.append(_weight_tangent(lhs, d_rhs, params))
        if not parts:
            return out, jnp.zeros_like(out)
        return out, sum(parts[1:], parts[0])

    conv.defjvp(conv_jvp, symbolic_zeros=True)
    return conv


def patch_convs(f: Callable) -> Callable:
    """``f(params, x)`` with its ungrouped convolutions' kernel derivatives as patch contractions.

    Same values as ``f``, and the same derivatives to float rounding; ``f`` itself when the
    default backend is not in :data:`ENABLED_BACKENDS`.
    """
    if jax.default_backend() not in ENABLED_BACKENDS:
        return f

    def g(params, x):
        leaves, prog, out_tree = _program(f, params, x)
        if not any(_eligible(e) for e in prog.eqns):
            return f(params, x)
        env = dict(zip(prog.invars, leaves, strict=True))
        for eqn in prog.eqns:
            ins = [_ir.read(env, a) for a in eqn.invars]
            if _eligible(eqn):
                outs = [_conv(eqn.primitive, eqn.params)(*ins)]
            else:
                outs = _ir.bind(eqn, ins)
            env.update(zip(eqn.outvars, outs, strict=True))
        return jax.tree.unflatten(out_tree, [_ir.read(env, a) for a in prog.outvars])

    return g


def _program(f: Callable, params, x):
    """(leaves of (params, x), f's flat program with custom-derivative calls kept, output tree)."""
    leaves, tree = jax.tree.flatten((params, x))
    avals = [jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)) for a in leaves]
    closed, out_shape = jax.make_jaxpr(
        lambda *t: f(*jax.tree.unflatten(tree, list(t))), return_shape=True
    )(*avals)
    return leaves, _ir.flatten(closed, keep_custom=True), jax.tree.structure(out_shape)


def count(f: Callable, params, x) -> int:
    """How many convolutions of ``f(params, x)`` :func:`patch_convs` rewrites (for tests)."""
    return sum(_eligible(e) for e in _program(f, params, x)[1].eqns)
