"""ResNets (He et al., 2016) in torchvision's form: block type, stage depths and base width.

A config is ``{"block": "basic", "depths": [2, 2, 2, 2], "width": 64}``: 3 or 4 stages of
``depths[i]`` blocks each; stage i has ``width * 2**i`` channels (times 4 at the output of a
bottleneck block) and stride 2 except the first. ResNet-18 is basic [2, 2, 2, 2] width 64 and
ResNet-50 bottleneck [3, 4, 6, 3] width 64 (the v1.5 bottleneck: stride on the 3x3 conv).

Stem: ``"imagenet"`` (conv7x7/2 + BN-ReLU + max-pool 3x3/2) or ``"cifar"`` (conv3x3/1 + BN-ReLU).
A config may name it (``"stem": "cifar"``); otherwise inputs of at least 128x128 get the ImageNet
stem and smaller ones the CIFAR stem. The search does not sample the stem: it belongs to the input.

Shortcuts are identity, or conv1x1 + BN where the shape changes (projection shortcuts, torchvision's
choice; the original CIFAR ResNets' zero-padding shortcut is not offered). Convs have no bias and
use torchvision's init (Kaiming normal, fan-out); the head is a linear layer on the global average.

:class:`SharedResNet` is every ResNet of the space at once (``ResNetSpace.shared_graph``, see
:mod:`search_spaces._masked`): per block type, 4 stages of 9 blocks at width 64, with masks.
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
    check_list,
    check_mapping,
    gather_layers,
    register,
)
from ._layers import batch_norm, conv, kaiming_fan_out, torch_default_init
from ._masked import gate, masked_graph, mix, prefix_mask, scaled_init

BLOCKS = ("basic", "bottleneck")
STEMS = ("cifar", "imagenet")
NUM_STAGES = (3, 4)
MAX_BLOCKS_PER_STAGE = 9
WIDTHS = (16, 24, 32, 48, 64)
_IMAGENET_STEM_MIN_SIDE = 128


def default_stem(height: int, width: int) -> str:
    """``"imagenet"`` for inputs of at least 128x128, ``"cifar"`` below."""
    return "imagenet" if min(height, width) >= _IMAGENET_STEM_MIN_SIDE else "cifar"


def _conv(features: int, kernel: int, stride: int = 1, name: str | None = None) -> nn.Conv:
    return conv(features, kernel, stride, kernel_init=kaiming_fan_out, name=name)


class BasicBlock(nn.Module):
    features: int
    stride: int = 1
    expansion = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        y = nn.relu(batch_norm(train)(_conv(self.features, 3, self.stride)(x)))
        y = batch_norm(train)(_conv(self.features, 3)(y))
        return nn.relu(y + _shortcut(x, self.features, self.stride, train))


class Bottleneck(nn.Module):
    features: int
    stride: int = 1
    expansion = 4

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        out = self.features * self.expansion
        y = nn.relu(batch_norm(train)(_conv(self.features, 1)(x)))
        y = nn.relu(batch_norm(train)(_conv(self.features, 3, self.stride)(y)))
        y = batch_norm(train)(_conv(out, 1)(y))
        return nn.relu(y + _shortcut(x, out, self.stride, train))


def _shortcut(x: jax.Array, features: int, stride: int, train: bool) -> jax.Array:
    # Called inside a block's compact __call__, so the layers it makes belong to that block.
    if stride == 1 and x.shape[-1] == features:
        return x
    return batch_norm(train, name="downsample_bn")(_conv(features, 1, stride, name="downsample")(x))


class ResNet(nn.Module):
    """torchvision's ResNet with ``len(depths)`` stages and a CIFAR or ImageNet stem."""

    block: str
    depths: tuple[int, ...]
    width: int
    stem: str
    num_classes: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        block_cls = {"basic": BasicBlock, "bottleneck": Bottleneck}[self.block]
        if self.stem == "imagenet":
            x = nn.relu(batch_norm(train, "stem_bn")(_conv(self.width, 7, 2, "stem")(x)))
            x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
        else:
            x = nn.relu(batch_norm(train, "stem_bn")(_conv(self.width, 3, 1, "stem")(x)))
        for stage, depth in enumerate(self.depths):
            for i in range(depth):
                stride = 2 if stage > 0 and i == 0 else 1
                x = block_cls(self.width * 2**stage, stride, name=f"stage{stage}_block{i}")(
                    x, train
                )
        x = jnp.mean(x, axis=(1, 2))  # (N, channels)
        return nn.Dense(self.num_classes, kernel_init=torch_default_init, name="fc")(x)


# --- the masked graph: every ResNet of the space as one module -----------------------------------

_EXPANSION = {"basic": 1, "bottleneck": 4}


def _masked_conv(features, kernel, stride, masks, on, name=None):
    """A conv of ``features`` (largest) channels initialized for ``masks = (in, out)`` active ones.

    torchvision's Kaiming normal (fan-out) of the candidate's own fan-out; 0 outside its region.
    """
    m_in, m_out = masks
    variance = 2.0 / (kernel * kernel * jnp.sum(m_out))
    init = scaled_init("normal", variance, m_in, m_out, on)
    return conv(features, kernel, stride, kernel_init=init, name=name)


def _bn_masked(train, x, mask, name=None):
    """BatchNorm, then inactive channels set to 0 (each channel has its own statistics)."""
    return batch_norm(train, name)(x) * mask


class MaskedBlock(nn.Module):
    """:class:`BasicBlock` or :class:`Bottleneck` at the largest width, masked.

    ``masks = (stream in, inner, stream out)`` are the 0/1 channel masks; ``on`` is 1 when the block
    exists (0 only zeroes the initial values; the caller makes an absent block the identity).
    """

    block: str
    features: int
    stride: int = 1

    @nn.compact
    def __call__(self, x, masks, on, train: bool):
        m_in, inner, m_out = masks
        out = self.features * _EXPANSION[self.block]
        if self.block == "basic":
            y = _masked_conv(self.features, 3, self.stride, (m_in, inner), on)(x)
            y = nn.relu(_bn_masked(train, y, inner))
            y = _bn_masked(train, _masked_conv(out, 3, 1, (inner, m_out), on)(y), m_out)
        else:
            y = _masked_conv(self.features, 1, 1, (m_in, inner), on)(x)
            y = nn.relu(_bn_masked(train, y, inner))
            y = _masked_conv(self.features, 3, self.stride, (inner, inner), on)(y)
            y = nn.relu(_bn_masked(train, y, inner))
            y = _bn_masked(train, _masked_conv(out, 1, 1, (inner, m_out), on)(y), m_out)
        if self.stride == 1 and x.shape[-1] == out:  # the same rule as _shortcut, at full width
            shortcut = x
        else:
            shortcut = _masked_conv(out, 1, self.stride, (m_in, m_out), on, name="downsample")(x)
            shortcut = _bn_masked(train, shortcut, m_out, name="downsample_bn")
        return nn.relu(y + shortcut)


class MaskedResNet(nn.Module):
    """Every ResNet of one block type: 4 stages of ``MAX_BLOCKS_PER_STAGE`` blocks, widest."""

    block: str
    stem: str
    num_classes: int

    @nn.compact
    def __call__(self, x, arch, train: bool = False):
        on_type = arch[BLOCKS.index(self.block)]
        num_stages, depths, width = arch[2], arch[3 : 3 + max(NUM_STAGES)], arch[-1]
        expansion, widest, dtype = _EXPANSION[self.block], max(WIDTHS), arch.dtype
        stream = prefix_mask(widest, width, dtype)
        k, s = (7, 2) if self.stem == "imagenet" else (3, 1)
        x = _masked_conv(widest, k, s, (jnp.ones(x.shape[-1], dtype), stream), on_type, "stem")(x)
        x = nn.relu(_bn_masked(train, x, stream, "stem_bn"))
        if self.stem == "imagenet":
            x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
        pooled, masks = [], []
        for stage in range(max(NUM_STAGES)):
            stage_on = on_type * (stage < num_stages).astype(dtype)
            inner = prefix_mask(widest * 2**stage, width * 2**stage, dtype)
            out = prefix_mask(expansion * widest * 2**stage, expansion * width * 2**stage, dtype)
            for i in range(MAX_BLOCKS_PER_STAGE):
                on = stage_on * (i < depths[stage]).astype(dtype)
                y = MaskedBlock(
                    self.block,
                    widest * 2**stage,
                    2 if stage > 0 and i == 0 else 1,
                    name=f"stage{stage}_block{i}",
                )(x, (stream, inner, out), on, train)
                x = y if i == 0 else gate(on, y, x)  # a stage's first block always exists
                stream = out
            pooled.append(jnp.mean(x, axis=(1, 2)))  # (N, channels of this stage)
            masks.append(out)
        # The head reads the last existing stage: the 4th, or the 3rd's padded channels.
        last_on = (num_stages > 3).astype(dtype)
        pad = [(0, 0), (0, pooled[-1].shape[-1] - pooled[-2].shape[-1])]
        x = gate(last_on, pooled[-1], jnp.pad(pooled[-2], pad))
        mask = gate(last_on, masks[-1], jnp.pad(masks[-2], pad[1]))
        fc_init = scaled_init("uniform", 1.0 / (3.0 * jnp.sum(mask)), mask, None, on_type)
        return nn.Dense(self.num_classes, kernel_init=fc_init, name="fc")(x)


class SharedResNet(nn.Module):
    """Every ResNet of the space: a :class:`MaskedResNet` per block type, mixed by a one-hot.

    ``arch`` is ``[*one-hot block, num_stages, *depths (0 for a 4th stage absent), width]``.
    """

    stem: str
    num_classes: int

    @nn.compact
    def __call__(self, x: jax.Array, arch: jax.Array, train: bool = False) -> jax.Array:
        assert arch.shape == (_ARCH_SIZE,), f"arch {arch.shape} != ({_ARCH_SIZE},)"
        logits = [
            MaskedResNet(block, self.stem, self.num_classes, name=block)(x, arch, train)
            for block in BLOCKS
        ]
        return mix(arch[: len(BLOCKS)], logits)


_ARCH_SIZE = len(BLOCKS) + 1 + max(NUM_STAGES) + 1


def _encoder(stem: str):
    def encode(config: Config) -> np.ndarray:
        if config.get("stem", stem) != stem:
            raise ValueError(
                f"stem={config['stem']!r}: this shared graph has the {stem!r} stem of its input "
                "size; score the config with its own network"
            )
        depths = list(config["depths"]) + [0] * (max(NUM_STAGES) - len(config["depths"]))
        block = np.eye(len(BLOCKS))[BLOCKS.index(config["block"])]
        return np.array([*block, len(config["depths"]), *depths, config["width"]], np.float32)

    return encode


@register
class ResNetSpace(SearchSpace):
    """Basic or bottleneck blocks, 3 or 4 stages of 1..9 blocks, base width {16, 24, 32, 48, 64}."""

    name = "resnet"
    default_num_classes = 10
    default_input_shape = (32, 32, 3)
    has_batch_norm = True
    size = len(BLOCKS) * len(WIDTHS) * sum(MAX_BLOCKS_PER_STAGE**s for s in NUM_STAGES)

    def suggest(self, trial) -> Config:
        block = trial.suggest_categorical("block", list(BLOCKS))
        num_stages = trial.suggest_categorical("num_stages", list(NUM_STAGES))
        depths = [
            trial.suggest_int(f"depths_{i}", 1, MAX_BLOCKS_PER_STAGE) for i in range(num_stages)
        ]
        width = trial.suggest_categorical("width", list(WIDTHS))
        return {"block": block, "depths": depths, "width": width}

    def validate(self, config: Config) -> Config:
        config = gather_layers(check_mapping(self.name, config), ("depths",))
        check_fields(self.name, config, ("block", "depths", "width"), ("num_stages", "stem"))
        depths = config["depths"]
        if isinstance(depths, (str, bytes)) or not hasattr(depths, "__len__"):
            raise ValueError(f"depths={depths!r} must be a list of 3 or 4 ints")
        check_choice("len(depths)", len(depths), NUM_STAGES)
        if "num_stages" in config:
            check_list("depths", depths, config["num_stages"], "num_stages")
        out = {
            "block": check_choice("block", config["block"], BLOCKS),
            "depths": [
                check_int(f"depths[{i}]", d, 1, MAX_BLOCKS_PER_STAGE) for i, d in enumerate(depths)
            ],
            "width": check_choice("width", config["width"], WIDTHS),
        }
        if "stem" in config:
            out["stem"] = check_choice("stem", config["stem"], STEMS)
        return out

    def build(self, config: Config, num_classes: int | None = None, input_shape=None):
        config = self.validate(config)
        num_classes, (height, width, _) = self.resolve_io(num_classes, input_shape)
        return ResNet(
            block=config["block"],
            depths=tuple(config["depths"]),
            width=config["width"],
            stem=config.get("stem") or default_stem(height, width),
            num_classes=num_classes,
        )

    def shared_graph(self, num_classes: int | None = None, input_shape=None) -> SharedGraph:
        """Every ResNet (with the input's default stem) as one :class:`SharedResNet`.

        A config naming the other stem is not held: ``encode`` raises ValueError for it.
        """
        num_classes, input_shape = self.resolve_io(num_classes, input_shape)
        stem = default_stem(*input_shape[:2])
        return masked_graph(
            self,
            SharedResNet(stem, num_classes),
            num_classes,
            input_shape,
            _encoder(stem),
            _ARCH_SIZE,
            rename=lambda path, config: (path[0], config["block"], *path[1:]),
        )

    def describe(self, config: Config) -> str:
        config = self.validate(config)
        depths = "-".join(map(str, config["depths"]))
        stem = f" {config['stem']}-stem" if "stem" in config else ""
        return f"{config['block']} {depths} w{config['width']}{stem}"

    def short(self, config: Config) -> str:
        """``bneck 3-4-6-3 w64``: block (``basic`` or ``bneck``), blocks per stage, width (then
        ``cifar``/``imnet`` for a named stem)."""
        config = self.validate(config)
        block = "bneck" if config["block"] == "bottleneck" else config["block"]
        depths = "-".join(map(str, config["depths"]))
        stem = {"cifar": " cifar", "imagenet": " imnet"}.get(config.get("stem"), "")
        return f"{block} {depths} w{config['width']}{stem}"

    def size_extremes(self) -> tuple[Config, ...]:
        """Either block at the fewest stages, blocks and width, and at the most."""
        least = {"depths": [1] * min(NUM_STAGES), "width": min(WIDTHS)}
        most = {"depths": [MAX_BLOCKS_PER_STAGE] * max(NUM_STAGES), "width": max(WIDTHS)}
        return tuple({"block": b, **c} for c in (least, most) for b in BLOCKS)

    def enumerate(self) -> Iterator[Config]:
        blocks = range(1, MAX_BLOCKS_PER_STAGE + 1)
        for block, width, num_stages in itertools.product(BLOCKS, WIDTHS, NUM_STAGES):
            for depths in itertools.product(blocks, repeat=num_stages):
                yield {"block": block, "depths": list(depths), "width": width}
