"""The AutoFormer network in Flax: patch embedding, attention with 2-D relative positions, blocks.

Shapes: images are NHWC; tokens are ``(N, T, D)`` with ``T = 1 + gh * gw`` (the class token first,
then the patches of a ``gh x gw`` grid in row-major order).

Two variants of the same space (see :data:`VARIANTS`): ``"autoformer"``, the network of
AutoFormer's public model code as run for its published supernets (``--change_qkv
--relative_position --gp``), and ``"autoprox"``, the simplified subnet that Auto-Prox trained for
ViT-Bench-101 (qkv width = embed dim, no relative positions).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ._layers import torch_default_init

# timm's trunc_normal_(std=0.02), which both originals use, truncates at +-2 in absolute value,
# i.e. at 100 standard deviations: the distribution is a plain normal.
normal_init = nn.initializers.normal(stddev=0.02)


@dataclasses.dataclass(frozen=True)
class Variant:
    """What differs between the AutoFormer network and Auto-Prox's subnet.

    Attributes:
      head_dim: width of one head; None means ``embed_dim // heads`` (qkv width = embed dim).
      max_relative_position: clip distance of the 2-D relative position embeddings on keys and
        values; None means no relative positions.
      ln_epsilon: epsilon of every LayerNorm.
    """

    head_dim: int | None
    max_relative_position: int | None
    ln_epsilon: float


VARIANTS = {
    # microsoft/Cream AutoFormer: heads 64 wide whatever the embed dim, RelativePosition2D with
    # max distance 14, LayerNormSuper built with torch's default eps.
    "autoformer": Variant(head_dim=64, max_relative_position=14, ln_epsilon=1e-5),
    # lliai/Auto-Prox-AAAI24 AutoFormerSub: qkv Linear(E, 3E) split into heads, eps 1e-6.
    "autoprox": Variant(head_dim=None, max_relative_position=None, ln_epsilon=1e-6),
}


def relative_position_index(grid: tuple[int, int], max_distance: int) -> list[np.ndarray]:
    """Relative-position table rows over the tokens of a ``gh x gw`` grid plus the class token.

    For each axis (vertical, then horizontal) the distance of key from query along that axis,
    ``d = coord(key) - coord(query)``, is clipped to ``[-R, R]`` and looked up in a table of
    ``2R + 2`` rows: row ``d + R + 1`` for two patches, row 0 for every pair that involves the
    class token. ``R = min(max_distance, side)`` for that axis's side, so the tables follow the
    grid: AutoFormer's 30-row tables on its 14x14 grid (224 px, patch 16), 10 rows on the 4x4
    grid of 32 px with patch 8. (Distance ``+-side`` cannot occur; AutoFormer's tables carry
    those two rows too.)

    Returns:
      ``[rows_v, rows_h]``: int32 ``(T, T)`` with ``T = 1 + gh * gw``, query by key.
    """
    gh, gw = grid
    index = np.arange(gh * gw)
    out = []
    for coord, side in ((index // gw, gh), (index % gw, gw)):
        r = min(max_distance, side)
        rows = np.clip(coord[None, :] - coord[:, None], -r, r) + r + 1
        out.append(np.pad(rows, ((1, 0), (1, 0))).astype(np.int32))  # class token: row 0
    return out


def relative_position_onehots(grid, max_distance, dtype) -> list[jax.Array]:
    """``[onehot_v, onehot_h]``, each ``(T, T, 2R + 2)``: the rows of ``relative_position_index``.

    ``onehot @ table`` gathers the embeddings by a matmul, which structured derivatives contract
    by their ``dot_general`` rule (a gather from a parameter has no rule and would fall back to
    the dense one). Built from iota inside the traced function, so no large constant enters it.
    """
    return [
        jax.nn.one_hot(rows, 2 * min(max_distance, side) + 2, dtype=dtype)
        for rows, side in zip(relative_position_index(grid, max_distance), grid, strict=True)
    ]


class RelativePosition2D(nn.Module):
    """The vertical and horizontal embedding tables of one use (keys or values) in one layer.

    ``__call__(onehots)`` returns ``[(onehot_v, table_v), (onehot_h, table_h)]``: the embedding of
    the pair (query i, key j) is the sum over the pairs of ``onehot[i, j] @ table``, a
    ``(features,)`` vector shared by all heads.
    """

    features: int
    table_init: Callable = normal_init

    @nn.compact
    def __call__(self, onehots: list[jax.Array]) -> list[tuple[jax.Array, jax.Array]]:
        pairs = []
        for onehot, name in zip(onehots, ("vertical", "horizontal"), strict=True):
            table = self.param(name, self.table_init, (onehot.shape[-1], self.features))
            pairs.append((onehot, table.astype(onehot.dtype)))
        return pairs


class Attention(nn.Module):
    """Multi-head self-attention (qkv width ``num_heads * head_dim``), 2-D relative positions.

    With ``onehots`` (AutoFormer; see :func:`relative_position_onehots`), query i attends to key j
    with logit ``q_i . (k_j + a_ij) / sqrt(head_dim)`` and gathers ``sum_j w_ij (v_j + b_ij)``,
    where ``a_ij`` and ``b_ij`` come from two :class:`RelativePosition2D` (``rel_pos_k``,
    ``rel_pos_v``). Without, plain attention.
    """

    num_heads: int
    head_dim: int

    @nn.compact
    def __call__(self, x: jax.Array, onehots: list[jax.Array] | None = None) -> jax.Array:
        n, t, d = x.shape  # (batch, tokens, embed_dim)
        h, c = self.num_heads, self.head_dim
        qkv = nn.Dense(3 * h * c, kernel_init=normal_init, name="qkv")(x).reshape(n, t, 3, h, c)
        rel_k = rel_v = ()
        if onehots is not None:
            rel_k = RelativePosition2D(c, name="rel_pos_k")(onehots)
            rel_v = RelativePosition2D(c, name="rel_pos_v")(onehots)
        out = attend(qkv, rel_k, rel_v)
        return nn.Dense(d, kernel_init=normal_init, name="proj")(out.reshape(n, t, h * c))


def attend(qkv: jax.Array, rel_k=(), rel_v=()) -> jax.Array:
    """Softmax attention of ``qkv`` ``(n, t, 3, h, c)``, scaled by ``1/sqrt(c)``: ``(n, t, h, c)``.

    ``rel_k`` and ``rel_v`` are the ``(onehot, table)`` pairs of :class:`RelativePosition2D` for
    the keys and the values (empty: plain attention).
    """
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # each (n, t, h, c)
    logits = jnp.einsum("nqhc,nkhc->nhqk", q, k)
    for onehot, table in rel_k:
        # q_i . a_ij without forming a_ij: (q_i . table_r) picked by the one-hot of (i, j)
        by_row = jnp.einsum("nqhc,rc->nhqr", q, table)
        logits = logits + jnp.einsum("nhqr,qkr->nhqk", by_row, onehot)
    weights = jax.nn.softmax(logits / math.sqrt(qkv.shape[-1]), axis=-1)
    out = jnp.einsum("nhqk,nkhc->nqhc", weights, v)
    for onehot, table in rel_v:
        per_row = jnp.einsum("nhqk,qkr->nqhr", weights, onehot)  # weight on each row
        out = out + jnp.einsum("nqhr,rc->nqhc", per_row, table)
    return out


class Block(nn.Module):
    """Pre-norm transformer block: attention and a GELU MLP, each with a residual."""

    num_heads: int
    head_dim: int
    mlp_ratio: float
    ln_epsilon: float

    @nn.compact
    def __call__(self, x: jax.Array, onehots: list[jax.Array] | None = None) -> jax.Array:
        d = x.shape[-1]
        attn = Attention(self.num_heads, self.head_dim)
        x = x + attn(nn.LayerNorm(epsilon=self.ln_epsilon)(x), onehots)
        y = nn.LayerNorm(epsilon=self.ln_epsilon)(x)
        y = nn.Dense(int(d * self.mlp_ratio), kernel_init=normal_init, name="fc1")(y)
        y = nn.gelu(y, approximate=False)
        return x + nn.Dense(d, kernel_init=normal_init, name="fc2")(y)


def _torch_bias_init(fan_in: int):
    """PyTorch's default bias of Conv2d/Linear: U(+-1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def patch_embed(features: int, patch: int, channels: int, wrap=lambda init: init) -> nn.Conv:
    """The stride-``patch`` conv ``patch_embed`` with PyTorch's default init (both originals).

    ``wrap(init)`` replaces each initializer (the masked graph confines them to a region).
    """
    return nn.Conv(
        features,
        (patch, patch),
        strides=(patch, patch),
        padding="VALID",
        kernel_init=wrap(torch_default_init),
        bias_init=wrap(_torch_bias_init(patch * patch * channels)),
        name="patch_embed",
    )


class VisionTransformer(nn.Module):
    """AutoFormer's ViT with per-layer heads and MLP ratios; ``depth == len(num_heads)``.

    Patch embedding (a stride-``p`` conv, PyTorch's default init as in both originals), a class
    token and a learned absolute position embedding, pre-norm blocks, a final LayerNorm, and a
    linear head on the mean of the patch tokens (the class token is not read by the head).

    Attributes:
      embed_dim: token width D.
      num_heads: heads of each layer.
      mlp_ratios: MLP hidden width of each layer, ``int(D * ratio)``.
      patch_size: side p of the square patches; H and W must be multiples of p.
      num_classes: logits.
      variant: the fields of a :class:`Variant` (head width, relative positions, LayerNorm eps).
    """

    embed_dim: int
    num_heads: tuple[int, ...]
    mlp_ratios: tuple[float, ...]
    patch_size: int
    num_classes: int
    variant: Variant = VARIANTS["autoformer"]

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        del train  # no BatchNorm, no dropout
        n, height, width, channels = x.shape
        p, e, var = self.patch_size, self.embed_dim, self.variant
        if height % p or width % p:
            raise ValueError(f"input {height}x{width} is not a multiple of patch_size={p}")
        x = patch_embed(e, p, channels)(x)
        onehots = None
        if var.max_relative_position is not None:  # one set for all layers
            grid = (x.shape[1], x.shape[2])
            onehots = relative_position_onehots(grid, var.max_relative_position, x.dtype)
        x = x.reshape(n, -1, e)
        cls = self.param("cls_token", normal_init, (1, 1, e))
        x = jnp.concatenate([jnp.broadcast_to(cls, (n, 1, e)).astype(x.dtype), x], 1)
        x = x + self.param("pos_embed", normal_init, (1, x.shape[1], e))
        for i, (h, r) in enumerate(zip(self.num_heads, self.mlp_ratios, strict=True)):
            head_dim = var.head_dim or e // h
            x = Block(h, head_dim, r, var.ln_epsilon, name=f"block_{i}")(x, onehots)
        x = nn.LayerNorm(epsilon=var.ln_epsilon, name="norm")(x)
        return nn.Dense(self.num_classes, kernel_init=normal_init, name="head")(
            x[:, 1:].mean(axis=1)
        )
