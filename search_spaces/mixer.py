"""MLP-Mixer (Tolstikhin et al., 2021): depth, hidden size, token- and channel-MLP widths, patch.

The network is google-research/vision_transformer's ``MlpMixer``: a stride-``p`` conv stem, blocks
of (LayerNorm -> token-mixing MLP across patches -> residual, LayerNorm -> channel-mixing MLP ->
residual), a final LayerNorm, the mean over patches and a linear head. MLPs are Dense-GELU-Dense
(exact GELU, as in PyTorch/timm). Mixer-S/16 is ``{"patch_size": 16, "depth": 8, "hidden_dim": 512,
"tokens_mlp_dim": 256, "channels_mlp_dim": 2048}`` and Mixer-B/16 ``{16, 12, 768, 384, 3072}``,
both in the space. The reference zero-initializes the head, which would leave only the head's
block in the NTK at initialization; here it keeps Flax's default (LeCun normal).

:class:`SharedMixer` is every Mixer of the space for one input size (``MixerSpace.shared_graph``,
see :mod:`search_spaces._masked`): the largest Mixer with masks, one stem per patch size.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ._base import (
    Config,
    SearchSpace,
    SharedGraph,
    check_choice,
    check_fields,
    check_int,
    check_mapping,
    register,
)
from ._layers import patchify
from ._masked import gate, masked_graph, mix, prefix_mask, scaled_init

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


# --- the masked graph: every Mixer of the space as one module -------------------------------------


def _lecun(fan_in, m_in=None, m_out=None, on=1.0):
    """Flax's default Dense/Conv kernel init (LeCun truncated normal) at the candidate's fan-in."""
    return scaled_init("truncated_normal", 1.0 / fan_in, m_in, m_out, on)


class MaskedMlpBlock(nn.Module):
    """:class:`MlpBlock` at its largest width; ``masks = (in, hidden, out)`` of active units."""

    mlp_dim: int
    out_dim: int

    @nn.compact
    def __call__(self, x, masks, on):
        m_in, hidden, m_out = masks
        init_0 = _lecun(jnp.sum(m_in), m_in, hidden, on)
        y = nn.gelu(nn.Dense(self.mlp_dim, kernel_init=init_0)(x), approximate=False) * hidden
        init_1 = _lecun(jnp.sum(hidden), hidden, m_out, on)
        return nn.Dense(self.out_dim, kernel_init=init_1)(y) * m_out


class MaskedMixerBlock(nn.Module):
    """:class:`MixerBlock` at its largest shapes; padded tokens and inactive channels stay 0."""

    tokens_mlp_dim: int
    channels_mlp_dim: int

    @nn.compact
    def __call__(self, x, masks, on):  # x: (n, tokens, hidden)
        tokens, hidden, token_units, channel_units = masks
        live = tokens[:, None] * hidden[None, :]  # (tokens, hidden)
        norm = hidden.astype(bool)[None, None, :]  # statistics over active channels only
        y = jnp.swapaxes(nn.LayerNorm()(x, mask=norm) * live, 1, 2)  # (n, hidden, tokens)
        y = MaskedMlpBlock(self.tokens_mlp_dim, x.shape[1], name="token_mixing")(
            y, (tokens, token_units, tokens), on
        )
        x = x + jnp.swapaxes(y, 1, 2) * live
        y = nn.LayerNorm()(x, mask=norm) * live
        y = MaskedMlpBlock(self.channels_mlp_dim, x.shape[-1], name="channel_mixing")(
            y, (hidden, channel_units, hidden), on
        )
        return x + y * live


class SharedMixer(nn.Module):
    """Every Mixer of the space for one input size: the largest :class:`MlpMixer`, masked.

    One patch stem per patch size (``stem_p{p}``), mixed by a one-hot; tokens are padded to the
    smallest patch's count. ``arch`` is ``[*one-hot patch, depth, hidden, tokens_mlp,
    channels_mlp, tokens]`` (:func:`_encoder`).
    """

    patch_sizes: tuple[int, ...]  # those that divide the input
    num_classes: int

    @nn.compact
    def __call__(self, x: jax.Array, arch: jax.Array, train: bool = False) -> jax.Array:
        del train  # no BatchNorm, no dropout
        assert arch.shape == (_arch_size(),), f"arch {arch.shape} != ({_arch_size()},)"
        n, height, width, channels = x.shape
        choice, (depth, hidden_dim, tokens_dim, channels_dim, num_tokens) = (
            arch[: len(PATCH_SIZES)],
            arch[len(PATCH_SIZES) :],
        )
        dtype, max_hidden = arch.dtype, max(HIDDEN_DIMS)
        max_tokens = (height // min(self.patch_sizes)) * (width // min(self.patch_sizes))
        hidden = prefix_mask(max_hidden, hidden_dim, dtype)
        tokens = prefix_mask(max_tokens, num_tokens, dtype)
        token_units = prefix_mask(max(TOKENS_MLP_DIMS), tokens_dim, dtype)
        channel_units = prefix_mask(max(CHANNELS_MLP_DIMS), channels_dim, dtype)
        stems = []
        for p in PATCH_SIZES:
            if p not in self.patch_sizes:
                stems.append(jnp.zeros((n, max_tokens, max_hidden), x.dtype))
                continue
            w = choice[PATCH_SIZES.index(p)]
            init = _lecun(p * p * channels, None, hidden, w)
            y = nn.Conv(
                max_hidden,
                (p, p),
                strides=(p, p),
                padding="VALID",
                kernel_init=init,
                name=f"stem_p{p}",
            )(x).reshape(n, -1, max_hidden)
            stems.append(jnp.pad(y, ((0, 0), (0, max_tokens - y.shape[1]), (0, 0))))
        x = mix(choice, stems) * (tokens[:, None] * hidden[None, :])
        masks = (tokens, hidden, token_units, channel_units)
        for i in range(MAX_DEPTH):
            on = (i < depth).astype(dtype)
            y = MaskedMixerBlock(max(TOKENS_MLP_DIMS), max(CHANNELS_MLP_DIMS), name=f"block_{i}")(
                x, masks, on
            )
            x = gate(on, y, x)
        x = nn.LayerNorm(name="pre_head_layer_norm")(x, mask=hidden.astype(bool)[None, None, :])
        x = jnp.sum(x * (tokens[:, None] * hidden[None, :]), axis=1) / num_tokens
        head_init = _lecun(hidden_dim, hidden)
        return nn.Dense(self.num_classes, kernel_init=head_init, name="head")(x)


def _arch_size() -> int:
    return len(PATCH_SIZES) + 5


def _patch_sizes(height: int, width: int) -> tuple[int, ...]:
    return tuple(p for p in PATCH_SIZES if height % p == 0 and width % p == 0)


def _check_patch(p: int, height: int, width: int) -> int:
    if p not in _patch_sizes(height, width):
        raise ValueError(
            f"patch_size={p} does not divide the input {height}x{width}; allowed values: "
            f"{list(_patch_sizes(height, width))}"
        )
    return p


def _encoder(height: int, width: int):
    def encode(config: Config) -> np.ndarray:
        p = _check_patch(config["patch_size"], height, width)
        return np.array(
            [
                *np.eye(len(PATCH_SIZES))[PATCH_SIZES.index(p)],
                config["depth"],
                config["hidden_dim"],
                config["tokens_mlp_dim"],
                config["channels_mlp_dim"],
                (height // p) * (width // p),
            ],
            np.float32,
        )

    return encode


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
        _check_patch(config["patch_size"], height, width)
        return MlpMixer(**config, num_classes=num_classes)

    def shared_graph(self, num_classes: int | None = None, input_shape=None) -> SharedGraph:
        """Every Mixer whose patch divides the input, as one :class:`SharedMixer`."""
        num_classes, input_shape = self.resolve_io(num_classes, input_shape)
        height, width, _ = input_shape
        if not _patch_sizes(height, width):
            raise ValueError(
                f"no patch size of {list(PATCH_SIZES)} divides the input {height}x{width}"
            )
        module = SharedMixer(_patch_sizes(height, width), num_classes)

        def rename(path, config):
            if path[1] == "stem":
                return (path[0], f"stem_p{config['patch_size']}", *path[2:])
            return path

        encode = _encoder(height, width)
        return masked_graph(self, module, num_classes, input_shape, encode, _arch_size(), rename)

    def describe(self, config: Config) -> str:
        c = self.validate(config)
        return (
            f"p{c['patch_size']} d{c['depth']} h{c['hidden_dim']} "
            f"tok{c['tokens_mlp_dim']} ch{c['channels_mlp_dim']}"
        )

    def short(self, config: Config) -> str:
        """``p8 d6 h512 t256 c2048``: patch, depth, hidden, token-MLP and channel-MLP widths."""
        c = self.validate(config)
        return (
            f"p{c['patch_size']} d{c['depth']} h{c['hidden_dim']} "
            f"t{c['tokens_mlp_dim']} c{c['channels_mlp_dim']}"
        )

    def size_extremes(self) -> tuple[Config, ...]:
        """Per patch size (the stem grows with it, the token MLPs shrink), every width and the
        depth at its least and at its most."""
        dims = (HIDDEN_DIMS, TOKENS_MLP_DIMS, CHANNELS_MLP_DIMS)
        return tuple(
            dict(zip(_FIELDS, (p, pick((MIN_DEPTH, MAX_DEPTH)), *map(pick, dims)), strict=True))
            for p in PATCH_SIZES
            for pick in (min, max)
        )

    def enumerate(self) -> Iterator[Config]:
        depths = range(MIN_DEPTH, MAX_DEPTH + 1)
        for values in itertools.product(
            PATCH_SIZES, depths, HIDDEN_DIMS, TOKENS_MLP_DIMS, CHANNELS_MLP_DIMS
        ):
            yield dict(zip(_FIELDS, values, strict=True))
