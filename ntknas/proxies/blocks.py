"""Per-block NTK proxies of Vision Transformers: the kernel of each group of parameters.

The NTK is a sum over parameter blocks, ``Θ = Σ_b J_b J_bᵀ`` (``ntknas.ntk.ntk_fn(...,
param_blocks=...)``). TF-TAS found that attention and MLP layers call for different measures;
here each block's kernel is read on its own: its trace, its smallest eigenvalue, its condition
number, its effective rank, and its share of the full kernel's trace.

:func:`vit_block` groups the parameters of the vit spaces' networks (the own AutoFormer network
and the masked shared graph name their parameters alike):

- ``attention``: ``Attention_0`` (qkv, output projection, relative-position tables);
- ``mlp``: ``fc1`` and ``fc2``;
- ``embedding``: the patch embedding, the class token and the position embedding;
- ``head``: the classifier;
- ``norm``: every LayerNorm.

Example:
  >>> kernel_fn = ntk.ntk_fn(f, param_blocks=vit_block)
  >>> block_proxies(kernel_fn(x, None, params))["blk_attention_eig_min"]
"""

from __future__ import annotations

import numpy as np

from .. import ntk
from ._registry import BLOCK_MEASURES, VIT_BLOCKS
from ._spectrum import spectrum
from .normalized import scale_free_proxies

_EMBEDDING = ("patch_embed", "cls_token", "pos_embed")


def vit_block(path: tuple) -> str:
    """The block of a vit-space parameter from its path (see the module docstring).

    Raises:
      ValueError: a path of none of the blocks (not a vit-space network).
    """
    keys = [str(k) for k in path]
    if "Attention_0" in keys:
        return "attention"
    if "fc1" in keys or "fc2" in keys:
        return "mlp"
    if "head" in keys:
        return "head"
    if any(k in _EMBEDDING for k in keys):
        return "embedding"
    if "norm" in keys or any(k.startswith("LayerNorm") for k in keys):
        return "norm"
    raise ValueError(f"parameter {tuple(path)} belongs to no ViT block ({', '.join(VIT_BLOCKS)})")


def block_proxies(kernels: dict, eps: float | None = None) -> dict[str, float]:
    """The per-block proxies of ``{block: (N, N, O, O) kernel}``.

    Args:
      kernels: each block's kernel of one batch with itself (the blocks of :func:`vit_block`;
        a missing block gives NaN).
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
