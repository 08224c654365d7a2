"""Per-block NTK proxies of Vision Transformers: the kernel of each group of parameters.

The NTK is a sum over parameter blocks, ``Θ = Σ_b J_b J_bᵀ`` (``ntknas.ntk.ntk_fn(...,
param_blocks=...)``). TF-TAS found that attention and MLP layers call for different measures;
here each block's kernel is read on its own: its trace, its smallest eigenvalue, its condition
number, its effective rank, and its share of the full kernel's trace.

A space names its blocks by ``SearchSpace.param_block`` (the vit spaces: attention, MLP,
embedding, head, norm; ``search_spaces.vit.param_block``); the scorer computes these proxies when
an objective names one (``Scorer.score(..., blocks=True)``).

Example:
  >>> kernel_fn = ntk.ntk_fn(f, param_blocks=get_space("vit-tiny").param_block)
  >>> block_proxies(kernel_fn(x, None, params))["blk_attention_eig_min"]
"""

from __future__ import annotations

import numpy as np

from .. import ntk
from ._registry import BLOCK_MEASURES, VIT_BLOCKS
from ._spectrum import spectrum
from .normalized import scale_free_proxies


def block_proxies(kernels: dict, eps: float | None = None) -> dict[str, float]:
    """The per-block proxies of ``{block: (N, N, O, O) kernel}``.

    Args:
      kernels: each block's kernel of one batch with itself (the blocks of a space's
        ``param_block``; a missing block gives NaN).
      eps: threshold for the condition numbers (default: epsilon of the kernels' dtype).

    Returns:
      ``blk_{block}_{measure}`` for every block of :data:`VIT_BLOCKS` and measure of
      :data:`BLOCK_MEASURES`: ``trace``, ``eig_min``, ``cond`` (inf if singular), ``eff_rank``
      and ``share`` (the block's trace over the sum of all blocks' traces).

    Raises:
      ValueError: kernels that are not (N, N, O, O), or of different shapes.
    """
    mats = {}
    for name, k in kernels.items():
        k = np.asarray(k)
        if k.ndim != 4 or k.shape[0] != k.shape[1] or k.shape[2] != k.shape[3]:
            raise ValueError(f"block {name!r}: expected an (N, N, O, O) kernel, got {k.shape}")
        if eps is None:
            eps = float(np.finfo(k.dtype).eps)
        mats[name] = ntk.as_matrix(k).astype(np.float64)
    if len({m.shape for m in mats.values()}) > 1:
        raise ValueError("block kernels of different shapes")
    total = sum(float(np.trace(m)) for m in mats.values())
    out = {}
    for block in VIT_BLOCKS:
        values = dict.fromkeys(BLOCK_MEASURES, float("nan"))
        if block in mats:
            s = spectrum(mats[block], eps)
            values.update(
                trace=s.trace,
                eig_min=s.lambda_min,
                cond=s.cond,
                eff_rank=scale_free_proxies(mats[block], s, eps)["ntk_eff_rank"],
                share=s.trace / total if total > 0 else float("nan"),
            )
        out.update({f"blk_{block}_{m}": v for m, v in values.items()})
    return out
