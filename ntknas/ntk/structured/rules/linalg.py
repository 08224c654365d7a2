"""Rules for contractions: dot_general and conv_general_dilated (the big wins, paper eq. 8-9)."""

from __future__ import annotations

import itertools
import math

import jax.numpy as jnp
from jax import lax

from .._structure import Structure
from ._registry import register


@register("dot_general")
def dot_general(eqn, idx, out_idx, invals):
    """``y = dot_general(lhs, rhs)``: ∂y/∂rhs is the other operand, constant block-diagonal along
    the batch dims and along θ's free dims (eq. 8: ``I ⊗ x``)."""
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    other = invals[1 - idx]
    if other is None:
        return None
    nl, nr = len(eqn.invars[0].shape), len(eqn.invars[1].shape)
    lhs_ids = list(range(nl))
    rhs_ids = [None] * nr
    for l_ax, r_ax in zip(lc, rc, strict=True):
        rhs_ids[r_ax] = lhs_ids[l_ax]
    for l_ax, r_ax in zip(lb, rb, strict=True):
        rhs_ids[r_ax] = lhs_ids[l_ax]
    nxt = nl
    for r_ax in range(nr):
        if rhs_ids[r_ax] is None:
            rhs_ids[r_ax] = nxt
            nxt += 1
    l_free = [a for a in range(nl) if a not in lc and a not in lb]
    r_free = [a for a in range(nr) if a not in rc and a not in rb]
    y_ids = (
        tuple(lhs_ids[a] for a in lb)
        + tuple(lhs_ids[a] for a in l_free)
        + tuple(rhs_ids[a] for a in r_free)
    )
    ids = (tuple(lhs_ids), tuple(rhs_ids))
    return Structure(y_ids, ids[idx], ((other, ids[1 - idx]),))


@register("conv_general_dilated")
def conv_general_dilated(eqn, idx, out_idx, invals):
    """``y = conv(x, W)`` w.r.t. the kernel W: the factor is the input patches, block-diagonal
    along feature groups; constant block-diagonal along W's output channels within a group.

    ``y[b, g, o, s] = Σ_{c, k} P[b, g, c, k, s] W[k, c, (g, o)]`` with ``P`` the patches of ``x``
    (built by :func:`_patches`).
    """
    if idx != 1 or invals[0] is None or eqn.params.get("batch_group_count", 1) != 1:
        return None
    p = eqn.params
    x = invals[0]
    lhs_spec, rhs_spec, out_spec = p["dimension_numbers"]
    w_shape = eqn.invars[1].shape
    y_shape = eqn.outvars[0].shape
    groups = p["feature_group_count"]
    window = tuple(w_shape[d] for d in rhs_spec[2:])
    patches = _patches(x, lhs_spec, window, tuple(y_shape[d] for d in out_spec[2:]), p)
    n_b, c_in = patches.shape[0], w_shape[rhs_spec[1]] * groups
    spatial_out = tuple(y_shape[d] for d in out_spec[2:])
    patches = patches.reshape((n_b, groups, c_in // groups, *window, *spatial_out))
    o_total = w_shape[rhs_spec[0]]
    return _structure(eqn, patches, groups, window, o_total)


def _patches(x, lhs_spec, window, out_spatial, p):
    """Input patches ``(N, C, *window, *out_spatial)`` by strided slices of the padded input.

    Slicing moves data only; ``lax.conv_general_dilated_patches`` would run a real convolution
    with an identity kernel (C·k² output features), which costs more FLOPs than the NTK itself.
    """
    x = jnp.transpose(x, tuple(lhs_spec))  # (N, C, *spatial)
    config = [(0, 0, 0), (0, 0, 0)] + [
        (lo, hi, d - 1) for (lo, hi), d in zip(p["padding"], p["lhs_dilation"], strict=True)
    ]
    x = lax.pad(x, jnp.zeros((), x.dtype), config)
    strides, rhs_dil = p["window_strides"], p["rhs_dilation"]
    if tuple(strides) == tuple(window) and all(d == 1 for d in rhs_dil):
        return _tiles(x, window, out_spatial)
    slices = []
    for offset in itertools.product(*(range(k) for k in window)):
        start = [0, 0] + [o * d for o, d in zip(offset, rhs_dil, strict=True)]
        limit = [x.shape[0], x.shape[1]] + [
            st + (n - 1) * s + 1 for st, n, s in zip(start[2:], out_spatial, strides, strict=True)
        ]
        slices.append(lax.slice(x, start, limit, [1, 1, *strides]))
    stacked = jnp.stack(slices, axis=2)  # (N, C, prod(window), *out_spatial)
    return stacked.reshape(x.shape[:2] + tuple(window) + tuple(out_spatial))


def _tiles(x, window, out_spatial):
    """Patches of a conv whose stride equals its window (a ViT/Mixer patch embedding): the
    windows tile the input, so they are one crop, reshape and transpose (no per-offset slices).

    ``x``: (N, C, *padded spatial) -> (N, C, *window, *out_spatial).
    """
    nsp = len(window)
    x = x[(slice(None), slice(None), *(slice(0, o * k) for o, k in zip(out_spatial, window)))]
    split = [n for o, k in zip(out_spatial, window, strict=True) for n in (o, k)]
    x = x.reshape(x.shape[:2] + tuple(split))  # (N, C, o1, k1, o2, k2, ...)
    perm = (0, 1, *(3 + 2 * a for a in range(nsp)), *(2 + 2 * a for a in range(nsp)))
    return jnp.transpose(x, perm)


def _structure(eqn, patches, groups, window, o_total):
    """Ids: 0 batch, 1 group, 2 in-channel (per group), 3 out-channel (per group), 4.. window,
    4+nsp.. output spatial. A reshape only splits axes in place, so the group split of the channel
    axes happens where those axes sit in W and y; every other axis keeps its position.
    """
    _, rhs_spec, out_spec = eqn.params["dimension_numbers"]
    t_perm = tuple(rhs_spec)
    y_perm = tuple(out_spec)
    w_shape = eqn.invars[1].shape
    y_shape = eqn.outvars[0].shape
    nsp = len(window)
    win_ids = tuple(range(4, 4 + nsp))
    sp_ids = tuple(range(4 + nsp, 4 + 2 * nsp))
    f_ids = (0, 1, 2, *win_ids, *sp_ids)
    # θ: replace the out-channel axis by (g, o); the other axes keep their positions.
    t_ids, t_view = [], []
    for d in range(len(w_shape)):
        if d == t_perm[0]:
            t_ids += [1, 3]
            t_view += [groups, o_total // groups]
        elif d == t_perm[1]:
            t_ids.append(2)
            t_view.append(w_shape[d])
        else:
            t_ids.append(win_ids[t_perm.index(d) - 2])
            t_view.append(w_shape[d])
    y_ids, y_view = [], []
    for d in range(len(y_shape)):
        if d == y_perm[0]:
            y_ids.append(0)
            y_view.append(y_shape[d])
        elif d == y_perm[1]:
            y_ids += [1, 3]
            y_view += [groups, o_total // groups]
        else:
            y_ids.append(sp_ids[y_perm.index(d) - 2])
            y_view.append(y_shape[d])
    assert math.prod(t_view) == math.prod(w_shape) and math.prod(y_view) == math.prod(y_shape)
    return Structure(
        y_ids=tuple(y_ids),
        t_ids=tuple(t_ids),
        factors=((patches, f_ids),),
        y_shape=tuple(y_view),
        t_shape=tuple(t_view),
    )
