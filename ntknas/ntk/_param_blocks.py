"""Per-block kernels: the NTK as a sum over groups of parameters, Θ = Σ_b J_b J_bᵀ.

The Jacobian splits by columns into one part per parameter block, so the kernel splits into one
term per block. Each term is the kernel of ``f`` with respect to that block's parameters alone,
the other parameters held at their values. Computing it that way works with every method
(:func:`block_kernels`): the block's leaves are the parameters, the other leaves ride along with
the inputs, unbatched. Structured derivatives do not need it: their kernel is already a sum of
pairs of terms on one parameter leaf each, so one linearization and one backward pass give every
block's kernel (the pairs summed per block, :func:`.structured.leaf_kernel`).

A grouping is either a function from a parameter's path (a tuple of dict keys, sequence indices
and attribute names, e.g. ``("block_0", "fc1", "kernel")``) to a block name, or a mapping
``{name: predicate(path) -> bool}`` in which the first predicate that holds names the block.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax


def normalize(param_blocks) -> Any:
    """A hashable grouping: the function itself, or the mapping as a tuple of (name, predicate).

    Raises:
      ValueError: neither a function nor a non-empty mapping of names to functions.
    """
    if param_blocks is None or callable(param_blocks):
        return param_blocks
    normalized = isinstance(param_blocks, tuple) and all(
        isinstance(item, tuple) and len(item) == 2 for item in param_blocks
    )  # already normalized (Options copied with dataclasses.replace normalizes again)
    if (isinstance(param_blocks, Mapping) or normalized) and param_blocks:
        items = tuple(param_blocks.items()) if isinstance(param_blocks, Mapping) else param_blocks
        for name, predicate in items:
            if not isinstance(name, str) or not callable(predicate):
                raise ValueError(
                    f"param_blocks maps block names to predicates of a path; got {name!r}: "
                    f"{predicate!r}"
                )
        return items
    raise ValueError(
        "param_blocks must be a function of a parameter path returning a block name, or a "
        f"non-empty mapping of block names to predicates; got {param_blocks!r}"
    )


def path_keys(path) -> tuple:
    """A jax key path as a plain tuple: dict keys, sequence indices, attribute names."""
    out = []
    for k in path:
        for attr in ("key", "idx", "name"):
            if hasattr(k, attr):
                out.append(getattr(k, attr))
                break
        else:
            out.append(str(k))
    return tuple(out)


def assign(param_blocks, params) -> dict[str, list[int]]:
    """Block name -> the indices of its leaves in ``jax.tree.leaves(params)``, in first-seen order.

    Raises:
      ValueError: a leaf no predicate of a mapping claims, a block name that is not a string,
        or a block of a mapping that holds no parameter.
    """
    blocks: dict[str, list[int]] = {}
    if not callable(param_blocks):
        blocks = {name: [] for name, _ in param_blocks}
    for i, (path, _) in enumerate(jax.tree_util.tree_flatten_with_path(params)[0]):
        keys = path_keys(path)
        if callable(param_blocks):
            name = param_blocks(keys)
            if not isinstance(name, str):
                raise ValueError(f"param_blocks returned {name!r} for {keys}; block names are str")
        else:
            name = next((n for n, pred in param_blocks if pred(keys)), None)
            if name is None:
                raise ValueError(f"parameter {keys} is in no block of param_blocks")
        blocks.setdefault(name, []).append(i)
    empty = [name for name, idx in blocks.items() if not idx]
    if empty:
        raise ValueError(f"param_blocks: block(s) {empty} hold no parameter")
    return blocks


def block_vmap_axes(vmap_axes):
    """``vmap_axes`` for inputs ``(x, rest)``: the same batching of ``x``, ``rest`` unbatched."""
    if vmap_axes is None:
        return None
    if isinstance(vmap_axes, int):
        return ((vmap_axes, None), vmap_axes)
    in_axes, out_axis = vmap_axes
    return None if in_axes is None else ((in_axes, None), out_axis)


def block_kernels(compute_one: Callable, f: Callable, options, x1, x2, params) -> dict:
    """``{block: kernel of f w.r.t. that block}``, each by ``compute_one(f_b, options_b, ...)``.

    Args:
      compute_one: ``compute_one(f, options=, x1=, x2=, params=) -> kernel`` for a
        grouping-free ``options``.
      options: the :class:`._kernel.Options` whose ``param_blocks`` says the grouping.
    """
    leaves, tree = jax.tree.flatten(params)
    inner = dataclasses.replace(
        options, param_blocks=None, vmap_axes=block_vmap_axes(options.vmap_axes)
    )
    out = {}
    for name, idx in assign(options.param_blocks, params).items():
        chosen = set(idx)
        rest_idx = [i for i in range(len(leaves)) if i not in chosen]

        def f_block(own, xr, idx=idx, rest_idx=rest_idx):
            x, rest = xr
            merged = [None] * len(leaves)
            for i, leaf in zip(idx, own, strict=True):
                merged[i] = leaf
            for i, leaf in zip(rest_idx, rest, strict=True):
                merged[i] = leaf
            return f(jax.tree.unflatten(tree, merged), x)

        rest = [leaves[i] for i in rest_idx]
        x2_b = None if x2 is None else (x2, rest)
        block = [leaves[i] for i in idx]
        out[name] = compute_one(f_block, options=inner, x1=(x1, rest), x2=x2_b, params=block)
    return out
