"""Vision Transformer spaces of AutoFormer (Chen et al., 2021; microsoft/Cream, AutoFormer).

``vit-small`` is the AutoFormer-S space and ``vit-tiny`` the AutoFormer-T space: one embedding
dimension and one depth per network, and per layer a number of heads (head dimension 64, so the
query-key-value width is ``64 * heads``) and an MLP ratio. The network is the AutoFormer/ViT one:
patch embedding (a stride-``p`` conv), class token, learned position embedding, pre-norm blocks
(LayerNorm -> multi-head self-attention -> residual, LayerNorm -> GELU MLP -> residual), a final
LayerNorm and a linear head on the class token. ViT-S/16 (384, 12 layers, 6 heads, ratio 4) is in
``vit-small`` and ViT-Ti/16 (192, 12 layers, 3 heads, ratio 4) in ``vit-tiny``.

Patch size: a config may name one (``"patch_size": 16``); otherwise ``default_patch_size`` picks
the largest of 16, 8, 4, 2, 1 that divides H and W and leaves a grid of at least 4x4 patches. That
gives patch 16 on 224x224 (14x14 = 196 tokens, AutoFormer's setting) and patch 8 on the default
32x32 scoring input (4x4 = 16 tokens + class token). Why 8 and not 16 at 32x32, measured on the
2-core CPU for the largest vit-small candidate (448 wide, 14 layers, 7 heads, ratio 4; 33.9M
params): forward 1.19 GFLOP per example at patch 8 vs 0.35 at patch 16
(``jax.jit(apply).lower(...).cost_analysis()["flops"]``), and its full NTK (N=8, O=10, structured
derivatives, picked by ``ntk_fn``'s auto) takes 5.3 s after compilation (156 GFLOP) vs 0.9 s
(41 GFLOP). Both fit a budget of seconds; patch 8 keeps a 4x4 grid, so attention still mixes 17
tokens instead of 5, and the candidate is recognizably the 14x14-token network it stands for.
Name ``"patch_size": 16`` in the config for the faster setting.

Initialization follows timm: truncated normal (std 0.02) for the linear layers and the position
embedding, zero biases, a zero class token. (The original ViT zero-initializes the head, which would
make every NTK block but the head's vanish at initialization.)

Example:
  >>> space = get_space("vit-small")
  >>> module = space.build({"embed_dim": 384, "depth": 12, "heads": [6] * 12,
  ...                       "mlp_ratio": [4.0] * 12})      # 32x32x3 -> 10 logits, patch 8
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterator
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from ._base import (
    Config,
    SearchSpace,
    check_choice,
    check_fields,
    check_int,
    check_list,
    check_mapping,
    gather_layers,
    register,
    run_length,
)
from ._layers import patchify

HEAD_DIM = 64
_PATCH_CANDIDATES = (16, 8, 4, 2, 1)
_MIN_GRID = 4
_init = nn.initializers.truncated_normal(stddev=0.02)


def default_patch_size(height: int, width: int) -> int:
    """The largest of 16, 8, 4, 2, 1 dividing H and W that leaves at least a 4x4 patch grid."""
    for p in _PATCH_CANDIDATES:
        if height % p == 0 and width % p == 0 and min(height, width) // p >= _MIN_GRID:
            return p
    return 1


class Attention(nn.Module):
    """Multi-head self-attention whose qkv width is ``num_heads * head_dim`` (AutoFormer)."""

    num_heads: int
    head_dim: int = HEAD_DIM

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        n, t, d = x.shape  # (batch, tokens, embed_dim)
        h, c = self.num_heads, self.head_dim
        qkv = nn.Dense(3 * h * c, kernel_init=_init, name="qkv")(x).reshape(n, t, 3, h, c)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # each (n, t, h, c)
        logits = jnp.einsum("nqhc,nkhc->nhqk", q, k) / math.sqrt(c)
        weights = jax.nn.softmax(logits, axis=-1)
        out = jnp.einsum("nhqk,nkhc->nqhc", weights, v).reshape(n, t, h * c)
        return nn.Dense(d, kernel_init=_init, name="proj")(out)


class Block(nn.Module):
    """Pre-norm transformer block: attention and a GELU MLP, each with a residual."""

    num_heads: int
    mlp_ratio: float
    head_dim: int = HEAD_DIM

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        d = x.shape[-1]
        x = x + Attention(self.num_heads, self.head_dim)(nn.LayerNorm(epsilon=1e-6)(x))
        y = nn.LayerNorm(epsilon=1e-6)(x)
        y = nn.Dense(int(d * self.mlp_ratio), kernel_init=_init, name="fc1")(y)
        y = nn.gelu(y, approximate=False)
        return x + nn.Dense(d, kernel_init=_init, name="fc2")(y)


class VisionTransformer(nn.Module):
    """ViT with per-layer heads and MLP ratios; ``depth == len(num_heads)``.

    Attributes:
      embed_dim: token width D.
      num_heads: heads of each layer.
      mlp_ratios: MLP hidden width of each layer, as a multiple of D.
      patch_size: side p of the square patches; H and W must be multiples of p.
      num_classes: logits.
      head_dim: width of one head (64 in AutoFormer and ViT).
    """

    embed_dim: int
    num_heads: tuple[int, ...]
    mlp_ratios: tuple[float, ...]
    patch_size: int
    num_classes: int
    head_dim: int = HEAD_DIM

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        del train  # no BatchNorm, no dropout
        n = x.shape[0]
        x = patchify(x, self.embed_dim, self.patch_size, name="patch_embed")  # (n, tokens, D)
        cls = self.param("cls_token", nn.initializers.zeros, (1, 1, self.embed_dim))
        x = jnp.concatenate([jnp.broadcast_to(cls, (n, 1, self.embed_dim)).astype(x.dtype), x], 1)
        x = x + self.param("pos_embed", _init, (1, x.shape[1], self.embed_dim))
        for i, (h, r) in enumerate(zip(self.num_heads, self.mlp_ratios, strict=True)):
            x = Block(h, r, self.head_dim, name=f"block_{i}")(x)
        x = nn.LayerNorm(epsilon=1e-6, name="norm")(x[:, 0])
        return nn.Dense(self.num_classes, kernel_init=_init, name="head")(x)


@dataclasses.dataclass(frozen=True)
class _Choices:
    embed_dims: tuple[int, ...]
    depths: tuple[int, ...]
    heads: tuple[int, ...]
    mlp_ratios: tuple[float, ...]

    def size(self) -> int:
        per_layer = len(self.heads) * len(self.mlp_ratios)
        return len(self.embed_dims) * sum(per_layer**d for d in self.depths)


class _AutoFormerSpace(SearchSpace):
    choices: ClassVar[_Choices]
    default_num_classes = 10
    default_input_shape = (32, 32, 3)

    _FIELDS = ("embed_dim", "depth", "heads", "mlp_ratio")

    def suggest(self, trial) -> Config:
        c = self.choices
        embed = trial.suggest_categorical("embed_dim", list(c.embed_dims))
        depth = trial.suggest_categorical("depth", list(c.depths))
        heads = [trial.suggest_categorical(f"heads_{i}", list(c.heads)) for i in range(depth)]
        ratios = [
            trial.suggest_categorical(f"mlp_ratio_{i}", list(c.mlp_ratios)) for i in range(depth)
        ]
        return {"embed_dim": embed, "depth": depth, "heads": heads, "mlp_ratio": ratios}

    def validate(self, config: Config) -> Config:
        c = self.choices
        config = gather_layers(check_mapping(self.name, config), ("heads", "mlp_ratio"))
        check_fields(self.name, config, self._FIELDS, optional=("patch_size",))
        depth = check_choice("depth", config["depth"], c.depths)
        out = {
            "embed_dim": check_choice("embed_dim", config["embed_dim"], c.embed_dims),
            "depth": depth,
            "heads": [
                check_choice(f"heads[{i}]", v, c.heads)
                for i, v in enumerate(check_list("heads", config["heads"], depth, "depth"))
            ],
            "mlp_ratio": [
                check_choice(f"mlp_ratio[{i}]", v, c.mlp_ratios)
                for i, v in enumerate(check_list("mlp_ratio", config["mlp_ratio"], depth, "depth"))
            ],
        }
        if "patch_size" in config:
            out["patch_size"] = check_int("patch_size", config["patch_size"], 1, 1024)
        return out

    def build(self, config: Config, num_classes: int | None = None, input_shape=None):
        config = self.validate(config)
        num_classes, (height, width, _) = self.resolve_io(num_classes, input_shape)
        patch = config.get("patch_size") or default_patch_size(height, width)
        if height % patch or width % patch:
            raise ValueError(
                f"patch_size={patch} does not divide the input {height}x{width}; "
                f"allowed values: divisors of both"
            )
        return VisionTransformer(
            embed_dim=config["embed_dim"],
            num_heads=tuple(config["heads"]),
            mlp_ratios=tuple(float(r) for r in config["mlp_ratio"]),
            patch_size=patch,
            num_classes=num_classes,
        )

    def describe(self, config: Config) -> str:
        config = self.validate(config)
        text = (
            f"e{config['embed_dim']} d{config['depth']} heads {run_length(config['heads'])} "
            f"mlp {run_length([float(r) for r in config['mlp_ratio']])}"
        )
        return text + (f" p{config['patch_size']}" if "patch_size" in config else "")

    def enumerate(self) -> Iterator[Config]:
        c = self.choices
        for depth, embed in itertools.product(c.depths, c.embed_dims):
            for heads in itertools.product(c.heads, repeat=depth):
                for ratios in itertools.product(c.mlp_ratios, repeat=depth):
                    yield {
                        "embed_dim": embed,
                        "depth": depth,
                        "heads": list(heads),
                        "mlp_ratio": list(ratios),
                    }


@register
class VitSmall(_AutoFormerSpace):
    """AutoFormer-S: embed {320, 384, 448}, depth {12, 13, 14}, heads {5, 6, 7}, MLP {3, 3.5, 4}."""

    name = "vit-small"
    choices = _Choices((320, 384, 448), (12, 13, 14), (5, 6, 7), (3.0, 3.5, 4.0))
    size = choices.size()


@register
class VitTiny(_AutoFormerSpace):
    """AutoFormer-T: embed {192, 216, 240}, depth {12, 13, 14}, heads {3, 4}, MLP {3.5, 4}."""

    name = "vit-tiny"
    choices = _Choices((192, 216, 240), (12, 13, 14), (3, 4), (3.5, 4.0))
    size = choices.size()
