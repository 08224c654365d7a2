"""MLP-Mixer (Tolstikhin et al., 2021): depth, hidden size, token- and channel-MLP widths, patch.

The network is google-research/vision_transformer's ``MlpMixer``: a stride-``p`` conv stem, blocks
of (LayerNorm -> token-mixing MLP across patches -> residual, LayerNorm -> channel-mixing MLP ->
residual), a final LayerNorm, the mean over patches and a linear head. MLPs are Dense-GELU-Dense
(exact GELU, as in PyTorch/timm). Mixer-S/16 is ``{"patch_size": 16, "depth": 8, "hidden_dim": 512,
"tokens_mlp_dim": 256, "channels_mlp_dim": 2048}`` and Mixer-B/16 ``{16, 12, 768, 384, 3072}``,
both in the space. The reference zero-initializes the head, which would leave only the head's
block in the NTK at initialization; here it keeps Flax's default (LeCun normal).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp

from ._base import (
    Config,
    SearchSpace,
    check_choice,
    check_fields,
    check_int,
    check_mapping,
    register,
)
from ._layers import patchify

PATCH_SIZES = (4, 8, 16)
MIN_DEPTH, MAX_DEPTH = 2, 12
HIDDEN_DIMS = (128, 256, 384, 512, 768)
TOKENS_MLP_DIMS = (64, 128, 256, 384)
CHANNELS_MLP_DIMS = (256, 512, 1024, 2048, 3072)
_FIELDS = ("patch_size", "depth", "hidden_dim", "tokens_mlp_dim", "channels_mlp_dim")


class MlpBlock(nn.Module):
    mlp_dim: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = nn.gelu(nn.Dense(self.mlp_dim)(x), approximate=False)
        return nn.Dense(x.shape[-1])(y)


class MixerBlock(nn.Module):
    tokens_mlp_dim: int
    channels_mlp_dim: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:  # (n, tokens, hidden)
        y = jnp.swapaxes(nn.LayerNorm()(x), 1, 2)  # (n, hidden, tokens): mix across tokens
        x = x + jnp.swapaxes(MlpBlock(self.tokens_mlp_dim, name="token_mixing")(y), 1, 2)
        return x + MlpBlock(self.channels_mlp_dim, name="channel_mixing")(nn.LayerNorm()(x))


class MlpMixer(nn.Module):
    patch_size: int
    depth: int
    hidden_dim: int
    tokens_mlp_dim: int
    channels_mlp_dim: int
    num_classes: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        del train  # no BatchNorm, no dropout
        x = patchify(x, self.hidden_dim, self.patch_size, name="stem")  # (n, tokens, hidden)
        for i in range(self.depth):
            x = MixerBlock(self.tokens_mlp_dim, self.channels_mlp_dim, name=f"block_{i}")(x)
        x = jnp.mean(nn.LayerNorm(name="pre_head_layer_norm")(x), axis=1)
        return nn.Dense(self.num_classes, name="head")(x)


@register
class MixerSpace(SearchSpace):
    """Patch {4, 8, 16}, depth 2..12, hidden 128..768, token MLP 64..384, channel MLP 256..3072."""

    name = "mlp-mixer"
    default_num_classes = 10
    default_input_shape = (32, 32, 3)
    size = (
        len(PATCH_SIZES)
        * (MAX_DEPTH - MIN_DEPTH + 1)
        * len(HIDDEN_DIMS)
        * len(TOKENS_MLP_DIMS)
        * len(CHANNELS_MLP_DIMS)
    )

    def suggest(self, trial) -> Config:
        return {
            "patch_size": trial.suggest_categorical("patch_size", list(PATCH_SIZES)),
            "depth": trial.suggest_int("depth", MIN_DEPTH, MAX_DEPTH),
            "hidden_dim": trial.suggest_categorical("hidden_dim", list(HIDDEN_DIMS)),
            "tokens_mlp_dim": trial.suggest_categorical("tokens_mlp_dim", list(TOKENS_MLP_DIMS)),
            "channels_mlp_dim": trial.suggest_categorical(
                "channels_mlp_dim", list(CHANNELS_MLP_DIMS)
            ),
        }

    def validate(self, config: Config) -> Config:
        config = check_mapping(self.name, config)
        check_fields(self.name, config, _FIELDS)
        return {
            "patch_size": check_choice("patch_size", config["patch_size"], PATCH_SIZES),
            "depth": check_int("depth", config["depth"], MIN_DEPTH, MAX_DEPTH),
            "hidden_dim": check_choice("hidden_dim", config["hidden_dim"], HIDDEN_DIMS),
            "tokens_mlp_dim": check_choice(
                "tokens_mlp_dim", config["tokens_mlp_dim"], TOKENS_MLP_DIMS
            ),
            "channels_mlp_dim": check_choice(
                "channels_mlp_dim", config["channels_mlp_dim"], CHANNELS_MLP_DIMS
            ),
        }

    def build(self, config: Config, num_classes: int | None = None, input_shape=None):
        config = self.validate(config)
        num_classes, (height, width, _) = self.resolve_io(num_classes, input_shape)
        p = config["patch_size"]
        if height % p or width % p:
            raise ValueError(
                f"patch_size={p} does not divide the input {height}x{width}; allowed values: "
                f"{[q for q in PATCH_SIZES if height % q == 0 and width % q == 0]}"
            )
        return MlpMixer(**config, num_classes=num_classes)

    def describe(self, config: Config) -> str:
        c = self.validate(config)
        return (
            f"p{c['patch_size']} d{c['depth']} h{c['hidden_dim']} "
            f"tok{c['tokens_mlp_dim']} ch{c['channels_mlp_dim']}"
        )

    def enumerate(self) -> Iterator[Config]:
        depths = range(MIN_DEPTH, MAX_DEPTH + 1)
        for values in itertools.product(
            PATCH_SIZES, depths, HIDDEN_DIMS, TOKENS_MLP_DIMS, CHANNELS_MLP_DIMS
        ):
            yield dict(zip(_FIELDS, values, strict=True))
