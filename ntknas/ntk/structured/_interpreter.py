"""Linearize f in the parameters, find where parameters are consumed, and compute the factors.

For one input (one example when batched) this module produces, for every *term* k (a primitive
that consumes a view of a parameter, paper eq. 12-13):

- ``∂f̃/∂y_k``: the cotangent of its output for every output entry, from ONE linear transpose of
  the remainder f̃ of the linear jaxpr with the y_k as inputs (so the backward pass stops at y_k,
  and weight-space cotangents ∂f/∂θ are never formed);
- the factors of its :class:`Structure` ``∂y_k/∂θ`` (from the rule registry, or the dense rule).

A *view* of a parameter is the parameter seen through reshape/transpose/convert (inner-product
preserving); the primitive that consumes a view is the term, so the big cotangent of the view
itself never appears.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from .._blocks import UNBOUNDED, Blocking, basis_map
from . import _ir, _structure
from .rules import RULES, VIEW_PRIMITIVES

# Private switch (tests only, flipped by ntknas.ntk._switches.switched): False makes every
# primitive use the dense rule and disables views.
USE_RULES = True


@dataclass(frozen=True)
class TermMeta:
    """Static description of one term: which parameter, through which view, into which y."""

    leaf: int
    chain: tuple  # ((primitive name, params repr), ...) from the leaf to the view
    y: int  # index into the y list (the inputs of f̃)
    structure: _structure.StaticStructure
    view_shape: tuple[int, ...]


@dataclass(frozen=True)
class SideMeta:
    terms: tuple[TermMeta, ...]
    y_shapes: tuple[tuple[int, ...], ...]
    out_shape: tuple[int, ...]
    chains: tuple  # per term: tuple of (primitive, params) to map the view back to the leaf
    leaf_shapes: tuple[tuple[int, ...], ...]
    leaf_dtypes: tuple = ()


@dataclass
class _Analysis:
    known_eqns: list  # eqns that do not depend on the parameters
    views: dict  # Var -> (leaf, chain sig, chain ops)
    taps: list  # eqns consuming a view (in program order)
    y_vars: list  # Vars given as inputs to f̃
    terms: list  # (eqn or None, idx, out_idx, view Var, y index)
    dep: set


def _analyze(prog: _ir.Program, use_rules: bool) -> _Analysis:
    dep = set(prog.invars)
    views = {v: (i, (), ()) for i, v in enumerate(prog.invars)}
    known, taps, y_vars, terms = [], [], [], []
    for eqn in prog.eqns:
        dep_in = [a for a in eqn.invars if isinstance(a, _ir.Var) and a in dep]
        if not dep_in:
            known.append(eqn)
            continue
        dep.update(eqn.outvars)
        in_views = [k for k, a in enumerate(eqn.invars) if isinstance(a, _ir.Var) and a in views]
        if (
            use_rules
            and eqn.name in VIEW_PRIMITIVES
            and len(eqn.invars) == 1
            and len(eqn.outvars) == 1
            and in_views == [0]
        ):
            leaf, sig, ops = views[eqn.invars[0]]
            views[eqn.outvars[0]] = (
                leaf,
                sig + ((eqn.name, repr(sorted(eqn.params.items()))),),
                ops + ((eqn.primitive, eqn.params),),
            )
            continue
        if not in_views:
            continue
        taps.append(eqn)
        for out_idx, out in enumerate(eqn.outvars):
            y_vars.append(out)
            for k in in_views:
                terms.append((eqn, k, out_idx, eqn.invars[k], len(y_vars) - 1))
    for out in prog.outvars:  # f returns a view of a parameter itself: an identity term
        if isinstance(out, _ir.Var) and out in views and out not in y_vars:
            y_vars.append(out)
            terms.append((None, 0, 0, out, len(y_vars) - 1))
    return _Analysis(known, views, taps, y_vars, terms, dep)


def _structure_of(eqn, idx, out_idx, invals, use_rules, blocking: Blocking):
    if eqn is None:
        return None
    rule = RULES.get(eqn.name) if use_rules else None
    s = rule(eqn, idx, out_idx, invals) if rule is not None else None
    if s is not None and s.mismatch(eqn.outvars[out_idx].shape, eqn.invars[idx].shape):
        s = None  # a rule that does not fit these shapes: never contract it (see mismatch)
    return s if s is not None else _structure.dense(eqn, idx, out_idx, invals, blocking)


def side(f_single, params, x, blocking: Blocking = UNBOUNDED):
    """Cotangents, factors and static metadata for one input (one example when batched).

    Args:
      f_single: ``f(params, x)`` for this input, returning one array of shape ``S``.
      params: the parameter pytree.
      x: the input.
      blocking: how many output basis vectors the backward pass runs at once.

    Returns:
      ``(cts, factors, meta)``: ``cts[j]`` is ``(*S, *y_j.shape)``, ``factors[k]`` the list of
      factor arrays of term k, ``meta`` a :class:`SideMeta` (static).
    """
    leaves, tree = jax.tree.flatten(params)
    _, lin = jax.linearize(lambda p: f_single(p, x), params)
    closed = jax.make_jaxpr(lambda *t: lin(jax.tree.unflatten(tree, list(t))))(*leaves)
    prog = _ir.flatten(closed)
    out_atom = prog.outvars[0]
    out_shape = tuple(out_atom.shape)
    use_rules = USE_RULES
    an = _analyze(prog, use_rules)

    env: dict = {}
    for eqn in an.known_eqns:
        outs = _ir.bind(eqn, [_ir.read(env, a) for a in eqn.invars])
        env.update(zip(eqn.outvars, outs, strict=True))

    def value(a):
        if isinstance(a, _ir.Lit):
            return a.value
        return None if a in an.dep else env[a]

    metas, factors, chains = [], [], []
    for eqn, idx, out_idx, view, y in an.terms:
        invals = None if eqn is None else [value(a) for a in eqn.invars]
        s = _structure_of(eqn, idx, out_idx, invals, use_rules, blocking)
        if s is None:  # identity term: y is the view itself
            ids = tuple(range(len(view.shape)))
            s = _structure.Structure(ids, ids)
        leaf, sig, ops = an.views[view]
        metas.append(TermMeta(leaf, sig, y, s.static(), tuple(view.shape)))
        factors.append(s.arrays)
        chains.append(ops)
    cts = _cotangents(prog, an, env, out_shape, blocking)
    meta = SideMeta(
        tuple(metas),
        tuple(tuple(v.shape) for v in an.y_vars),
        out_shape,
        tuple(chains),
        tuple(tuple(jnp.shape(a)) for a in leaves),
        tuple(jnp.result_type(a) for a in leaves),
    )
    return cts, factors, meta


def _cotangents(prog, an: _Analysis, known_env: dict, out_shape, blocking: Blocking):
    """``∂f̃/∂y_j`` for every y_j and every output entry: (*out_shape, *y_j.shape) each."""
    if not an.y_vars:
        return []
    y_set = set(an.y_vars)
    tap_set = set(an.taps)

    def f_tilde(*ys):
        env = dict(known_env)
        env.update(zip(an.y_vars, ys, strict=True))
        for eqn in prog.eqns:
            if eqn in tap_set:
                _tap_rest(eqn, env, an)
            elif eqn.outvars and all(v in y_set or v in env for v in eqn.outvars):
                continue  # known, or a view that is an input
            elif any(isinstance(a, _ir.Var) and a in an.views for a in eqn.invars):
                continue  # a view primitive: only taps read its output
            else:
                outs = _ir.bind(eqn, [_ir.read(env, a) for a in eqn.invars])
                env.update(zip(eqn.outvars, outs, strict=True))
        return _ir.read(env, prog.outvars[0])

    y_avals = [jax.ShapeDtypeStruct(v.shape, v.dtype) for v in an.y_vars]
    transpose = jax.linear_transpose(f_tilde, *y_avals)
    out_dtype = prog.outvars[0].dtype if isinstance(prog.outvars[0], _ir.Var) else None
    # Each basis vector holds its cotangent of every y (and the backward pass's temporaries).
    per_vector = 2 * sum(math.prod(v.shape) * jnp.dtype(v.dtype).itemsize for v in an.y_vars)
    block = blocking.block(math.prod(out_shape), per_vector)
    cts = basis_map(transpose, out_shape, out_dtype, block)
    return [ct.reshape(out_shape + tuple(v.shape)) for ct, v in zip(cts, an.y_vars, strict=True)]


def _tap_rest(eqn, env, an: _Analysis):
    """A tap's output in f̃: its y input, plus what its non-view, parameter-dependent operands add
    (the primitive is linear in those jointly, so views are set to zero for that part)."""
    others = [a for a in eqn.invars if isinstance(a, _ir.Var) and a in an.dep and a not in an.views]
    if not others:
        return
    vals = []
    for a in eqn.invars:
        if isinstance(a, _ir.Var) and a in an.views:
            vals.append(jnp.zeros(a.shape, a.dtype))
        else:
            vals.append(_ir.read(env, a))
    for v, val in zip(eqn.outvars, _ir.bind(eqn, vals), strict=True):
        env[v] = env[v] + val
