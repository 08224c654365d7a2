"""The four-factor contraction of eq. (13), one einsum per pair of terms sharing a parameter.

``Θ += (∂f̃1/∂y1) (∂y1/∂θ) (∂y2/∂θ)ᵀ (∂f̃2/∂y2)ᵀ`` for every pair (k1, k2) of terms that consume
the same parameter leaf (all pairs: weight sharing). The structure's ids become einsum symbols:
θ's ids are shared by the two sides, every other id is side-specific, and opt_einsum picks the
contraction order for cost.

Per pair, the four-factor einsum competes with the parameter-space route (each term's weight-space
cotangent ``(∂f̃/∂y)(∂y/∂θ)`` formed once, reused by every pair it is in and by both sides when
x2 is x1, then one inner product): for convolutions with few outputs that route is the cheapest
order. Pairs whose θ views differ (a weight used both as W and as reshape(W)) always take it.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import opt_einsum

from ._interpreter import SideMeta, TermMeta
from ._structure import symbol

_FIRST_ID_SYMBOL = 200  # structure ids use symbols from here on; output axes use ASCII letters

# Private switch (tests): None picks each pair's route by cost; "structured" or "leaf" forces one
# (pairs whose θ views differ always take the leaf route).
FORCE_ROUTE: str | None = None


class _Symbols:
    """Maps (side, local id) and θ positions to distinct einsum symbols."""

    def __init__(self):
        self._next = _FIRST_ID_SYMBOL
        self._table: dict = {}

    def __call__(self, key) -> str:
        if key not in self._table:
            self._table[key] = symbol(self._next)
            self._next += 1
        return self._table[key]


def _optimize(n_operands: int) -> str:
    return "optimal" if n_operands <= 6 else "dp"


def _side_operands(side, term: TermMeta, ct, factors, out_letters, batch, sym, shared_t):
    """Einsum operands and subscripts of one side of a pair.

    ``shared_t``: map θ position -> symbol (shared with the other side), or None to give θ's
    ids side-specific symbols (for contraction to parameter space).
    """
    s = term.structure

    def name(i):
        if shared_t is not None and i in s.t_ids:
            return shared_t[s.t_ids.index(i)]
        return sym((side, i))

    lead = out_letters
    ct = ct.reshape(ct.shape[: len(lead)] + (s.y_shape or ct.shape[len(lead) :]))
    subs = [lead + "".join(name(i) for i in s.y_ids)]
    ops = [ct]
    for arr, ids in zip(factors, s.factor_ids, strict=True):
        subs.append(batch + "".join(name(i) for i in ids))
        ops.append(arr)
    return ops, subs, name


def _pair(side1, side2, k1, k2, letters, batch_letters):
    """The structured four-factor einsum of a pair of terms on the same θ view.

    Returns ``(spec, operands, scale)``; the pair's kernel is ``scale * einsum(spec, *operands)``.
    """
    m1, cts1, f1 = side1
    m2, cts2, f2 = side2
    t1, t2 = m1.terms[k1], m2.terms[k2]
    sym = _Symbols()
    t_shape = t1.structure.t_shape or t1.view_shape
    shared = [sym(("t", j)) for j in range(len(t_shape))]
    ops1, subs1, _ = _side_operands(
        1, t1, cts1[t1.y], f1[k1], letters[0], batch_letters[0], sym, shared
    )
    ops2, subs2, _ = _side_operands(
        2, t2, cts2[t2.y], f2[k2], letters[1], batch_letters[1], sym, shared
    )
    spec = ",".join(subs1 + subs2) + "->" + letters[2]
    # θ axes that neither side's operands see (both sides constant along them, e.g. reduce_sum
    # on both): the sum over θ counts each entry once per position along them.
    used = set("".join(subs1 + subs2))
    unseen = [n for n, sym_j in zip(t_shape, shared, strict=True) if sym_j not in used]
    return spec, ops1 + ops2, math.prod(unseen)


def _plan(spec, ops) -> tuple[float, object]:
    """opt_einsum's FLOP count of the best contraction order, and that order (shapes only).

    The order is handed to ``jnp.einsum`` so that the path is searched once per einsum.
    """
    if len(ops) == 1:
        return float(math.prod(ops[0].shape)), False
    path, info = opt_einsum.contract_path(
        spec, *[o.shape for o in ops], shapes=True, optimize=_optimize(len(ops))
    )
    return float(info.opt_cost), path


def _leaf_einsum(side, k, letters, batch_letter):
    """``(spec, operands, finish)`` of term k's weight-space cotangent ``(*out, *leaf)``."""
    meta, cts, facs = side
    term = meta.terms[k]
    s = term.structure
    sym = _Symbols()
    ops, subs, name = _side_operands(
        1, term, cts[term.y], facs[k], letters, batch_letter, sym, None
    )
    t_shape = s.t_shape or term.view_shape
    present = set().union(*(set(ids) for ids in s.factor_ids), set(s.y_ids))
    kept = [i for i in s.t_ids if i in present]
    spec = ",".join(subs) + "->" + letters + "".join(name(i) for i in kept)
    missing = tuple(len(letters) + j for j, i in enumerate(s.t_ids) if i not in present)
    leaf_shape = meta.leaf_shapes[term.leaf]
    chain = meta.chains[k]

    def finish(w):
        lead = w.shape[: len(letters)]
        if missing:
            w = jnp.broadcast_to(jnp.expand_dims(w, missing), lead + tuple(t_shape))
        if chain:
            w = w.reshape((-1, *term.view_shape))
            w = _view_transpose(chain, w, leaf_shape, meta.leaf_dtypes[term.leaf])
        return w.reshape(lead + tuple(leaf_shape))

    return spec, ops, finish


def _view_transpose(chain, w, leaf_shape, leaf_dtype):
    """Maps ``w (B, *view)`` back to ``(B, *leaf)`` through the transpose of the view chain.

    The chain holds inner-product preserving view primitives (reshape, transpose, squeeze,
    convert, copy), whose transposes are inverse moves: applied directly, a reshape chain costs
    one reshape instead of a traced ``linear_transpose``. Other primitives fall back to it.
    """
    shapes, dtypes = [tuple(leaf_shape)], [jnp.dtype(leaf_dtype)]
    for prim, params in chain:
        shape, dtype = shapes[-1], dtypes[-1]
        if prim.name == "reshape" and params.get("dimensions") is None:
            shape = tuple(params["new_sizes"])
        elif prim.name == "transpose":
            shape = tuple(shape[a] for a in params["permutation"])
        elif prim.name == "squeeze":
            dims = {d % len(shape) for d in params["dimensions"]}
            shape = tuple(n for a, n in enumerate(shape) if a not in dims)
        elif prim.name == "convert_element_type":
            dtype = jnp.dtype(params["new_dtype"])
        elif prim.name not in ("copy", "copy_p"):
            return _chain_transpose(chain, w, leaf_shape, leaf_dtype)
        shapes.append(shape)
        dtypes.append(dtype)
    b = w.shape[0]
    for (prim, params), shape, dtype in zip(
        reversed(chain), reversed(shapes[:-1]), reversed(dtypes[:-1]), strict=True
    ):
        if prim.name == "transpose":
            inverse = [0] * len(shape)
            for a, p in enumerate(params["permutation"]):
                inverse[p] = a
            w = jnp.transpose(w, (0, *(a + 1 for a in inverse)))
        else:
            w = w.reshape((b, *shape))
        w = w.astype(dtype)
    return w


def _chain_transpose(chain, w, leaf_shape, dtype):
    from . import _ir  # noqa: PLC0415  (tiny module; keeps the import graph one-way)

    def view_of(leaf):
        for prim, params in chain:
            leaf = _ir.bind(_ir.Eqn(prim, params, [], []), [leaf])[0]
        return leaf

    transpose = jax.linear_transpose(view_of, jax.ShapeDtypeStruct(leaf_shape, dtype))
    return jax.vmap(lambda v: transpose(v)[0])(w)


def contract(side1, side2, out_letters, batch_letters, group_of=None):
    """Σ over parameter leaves and pairs of terms; ``side = (meta, cts, factors)``.

    Args:
      side1, side2: ``(SideMeta, cotangents, factors)`` of x1 and x2, with per-example arrays
        stacked on a leading batch axis when batched.
      out_letters: (subscripts of side-1 cotangent lead axes, of side-2, of the kernel).
      batch_letters: (batch letter of side 1, of side 2), "" when not batched.
      group_of: None, or a parameter block name per leaf index: the pairs are then summed per
        block (a pair's two terms consume the same leaf), the per-block kernels of one pass.

    Returns:
      The kernel in the layout ``out_letters[2]``, or None when no parameter affects f; with
      ``group_of``, ``{block: kernel or None}`` over the blocks that any leaf is in.
    """
    m1: SideMeta = side1[0]
    m2: SideMeta = side2[0]
    shared_sides = side1 is side2
    cache: dict = {}
    plans: dict = {}

    def leaf_plan(side_no, k):
        key = (1 if shared_sides else side_no, k)
        if key not in plans:
            side = side1 if side_no == 1 else side2
            spec, ops, finish = _leaf_einsum(
                side, k, out_letters[side_no - 1], batch_letters[side_no - 1]
            )
            plans[key] = (spec, ops, finish, *_plan(spec, ops))
        return plans[key]

    def leaf_w(side_no, k):
        key = (1 if shared_sides else side_no, k)
        if key not in cache:
            spec, ops, finish, _, path = leaf_plan(side_no, k)
            cache[key] = finish(jnp.einsum(spec, *ops, optimize=path))
        return cache[key]

    def leaf_cost(side_no, k):
        return leaf_plan(side_no, k)[3]

    pairs = [
        (k1, k2)
        for k1, t1 in enumerate(m1.terms)
        for k2, t2 in enumerate(m2.terms)
        if t1.leaf == t2.leaf
    ]
    # How many pairs share each term's weight-space cotangent (to amortize its cost).
    uses: dict = {}
    for k1, k2 in pairs:
        for key in ((1, k1), (1 if shared_sides else 2, k2)):
            uses[key] = uses.get(key, 0) + 1
    totals: dict = {}
    for k1, k2 in pairs:
        t1, t2 = m1.terms[k1], m2.terms[k2]
        leaf_size = math.prod(m1.leaf_shapes[t1.leaf])
        kernel_size = math.prod(side1[1][t1.y].shape[: len(out_letters[0])]) * math.prod(
            side2[1][t2.y].shape[: len(out_letters[1])]
        )
        via_leaf = 2.0 * kernel_size * leaf_size
        for side_no, k in ((1, k1), (2, k2)):
            key = (1 if shared_sides else side_no, k)
            if key not in cache:
                via_leaf += leaf_cost(side_no, k) / uses[key]
        same_view = t1.chain == t2.chain and (t1.structure.t_shape or t1.view_shape) == (
            t2.structure.t_shape or t2.view_shape
        )
        structured = None
        if same_view:
            spec, ops, scale = _pair(side1, side2, k1, k2, out_letters, batch_letters)
            cost, path = _plan(spec, ops) if FORCE_ROUTE is None else (0.0, _optimize(len(ops)))
            if FORCE_ROUTE == "structured" or (FORCE_ROUTE is None and cost <= via_leaf):
                structured = jnp.einsum(spec, *ops, optimize=path)
                structured = structured * scale if scale != 1 else structured
        if structured is not None:
            term = structured
        else:  # contract in parameter space, reusing each term's weight-space cotangent
            w1, w2 = leaf_w(1, k1), leaf_w(2, k2)
            p = "".join(symbol(_FIRST_ID_SYMBOL + j) for j in range(w1.ndim - len(out_letters[0])))
            term = jnp.einsum(f"{out_letters[0]}{p},{out_letters[1]}{p}->{out_letters[2]}", w1, w2)
        group = None if group_of is None else group_of[t1.leaf]
        totals[group] = term if group not in totals else totals[group] + term
    if group_of is None:
        return totals.get(None)
    return {group: totals.get(group) for group in dict.fromkeys(group_of.values())}
