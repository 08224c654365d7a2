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
    check_list,
    check_mapping,
    gather_layers,
    register,
)
from ._layers import batch_norm, conv, kaiming_fan_out, torch_default_init

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

    def describe(self, config: Config) -> str:
        config = self.validate(config)
        depths = "-".join(map(str, config["depths"]))
        stem = f" {config['stem']}-stem" if "stem" in config else ""
        return f"{config['block']} {depths} w{config['width']}{stem}"

    def enumerate(self) -> Iterator[Config]:
        blocks = range(1, MAX_BLOCKS_PER_STAGE + 1)
        for block, width, num_stages in itertools.product(BLOCKS, WIDTHS, NUM_STAGES):
            for depths in itertools.product(blocks, repeat=num_stages):
                yield {"block": block, "depths": list(depths), "width": width}
