"""Deep fully connected networks: depth, width and activation (the paper's Figure 1 family).

The input is flattened, passes ``depth`` hidden Dense layers of ``width`` units with the activation,
then a linear readout. Weights are normal with variance ``gain / fan_in`` (gain 2 for ReLU-like
activations, 1 for bounded ones), so the signal neither dies nor blows up with depth; biases are 0.

:class:`SharedMLP` is every MLP of the space at once (``MLPSpace.shared_graph``, see
:mod:`search_spaces._masked`): the deepest, widest MLP with masks, the config an input array.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

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
from ._masked import gate, masked_graph, mix, prefix_mask, scaled_init

MIN_DEPTH, MAX_DEPTH = 1, 10
WIDTHS = (64, 128, 256, 512, 1024, 2048)
# name -> (function, variance gain of the weights feeding it)
ACTIVATIONS: dict[str, tuple[Callable[[jax.Array], jax.Array], float]] = {
    "relu": (nn.relu, 2.0),
    "gelu": (lambda x: nn.gelu(x, approximate=False), 2.0),
    "swish": (nn.swish, 2.0),
    "tanh": (jnp.tanh, 1.0),
    "erf": (jax.scipy.special.erf, 1.0),
    "sigmoid": (nn.sigmoid, 1.0),
}
_FIELDS = ("depth", "width", "activation")


class MLP(nn.Module):
    depth: int
    width: int
    activation: str
    num_classes: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        del train  # no BatchNorm, no dropout
        act, gain = ACTIVATIONS[self.activation]
        x = x.reshape(x.shape[0], -1)  # (N, H*W*C)
        hidden_init = nn.initializers.variance_scaling(gain, "fan_in", "normal")
        first_init = nn.initializers.variance_scaling(1.0, "fan_in", "normal")
        for i in range(self.depth):
            init = first_init if i == 0 else hidden_init
            x = act(nn.Dense(self.width, kernel_init=init, name=f"dense_{i}")(x))
        readout_init = nn.initializers.variance_scaling(gain, "fan_in", "normal")
        return nn.Dense(self.num_classes, kernel_init=readout_init, name="readout")(x)


class SharedMLP(nn.Module):
    """Every MLP of the space: :class:`MLP` at depth ``max_depth`` and width ``max_width``, masked.

    ``arch`` is ``[depth, width, *one-hot activation]`` (:func:`_encode`); units past ``width``
    output 0, layers past ``depth`` are the identity, and the activation is an exact one-hot mix.
    """

    max_depth: int
    max_width: int
    num_classes: int

    @nn.compact
    def __call__(self, x: jax.Array, arch: jax.Array, train: bool = False) -> jax.Array:
        del train  # no BatchNorm, no dropout
        depth, width, choice = arch[0], arch[1], arch[2:]
        assert choice.shape == (len(ACTIVATIONS),), f"arch {arch.shape} != (2 + activations,)"
        units = prefix_mask(self.max_width, width, arch.dtype)  # (W,)
        gain = choice @ jnp.asarray([g for _, g in ACTIVATIONS.values()], arch.dtype)
        x = x.reshape(x.shape[0], -1)  # (N, H*W*C)
        for i in range(self.max_depth):
            on = (i < depth).astype(arch.dtype)
            if i == 0:  # always active; its inputs are the pixels
                init = scaled_init("normal", 1.0 / x.shape[-1], None, units)
            else:
                init = scaled_init("normal", gain / width, units, units, on)
            z = nn.Dense(self.max_width, kernel_init=init, name=f"dense_{i}")(x)
            y = mix(choice, [act(z) for act, _ in ACTIVATIONS.values()]) * units
            x = y if i == 0 else gate(on, y, x)
        readout_init = scaled_init("normal", gain / width, units)
        return nn.Dense(self.num_classes, kernel_init=readout_init, name="readout")(x)


def _encode(config: Config) -> np.ndarray:
    """``[depth, width, *one-hot activation]`` of a validated config."""
    choice = np.eye(len(ACTIVATIONS))[list(ACTIVATIONS).index(config["activation"])]
    return np.array([config["depth"], config["width"], *choice], np.float32)


@register
class MLPSpace(SearchSpace):
    """Depth 1..10, width 64..2048, activation relu/gelu/swish/tanh/erf/sigmoid."""

    name = "mlp"
    default_num_classes = 10
    default_input_shape = (32, 32, 3)
    size = (MAX_DEPTH - MIN_DEPTH + 1) * len(WIDTHS) * len(ACTIVATIONS)

    def suggest(self, trial) -> Config:
        return {
            "depth": trial.suggest_int("depth", MIN_DEPTH, MAX_DEPTH),
            "width": trial.suggest_categorical("width", list(WIDTHS)),
            "activation": trial.suggest_categorical("activation", list(ACTIVATIONS)),
        }

    def validate(self, config: Config) -> Config:
        config = check_mapping(self.name, config)
        check_fields(self.name, config, _FIELDS)
        return {
            "depth": check_int("depth", config["depth"], MIN_DEPTH, MAX_DEPTH),
            "width": check_choice("width", config["width"], WIDTHS),
            "activation": check_choice("activation", config["activation"], list(ACTIVATIONS)),
        }

    def build(self, config: Config, num_classes: int | None = None, input_shape=None):
        config = self.validate(config)
        num_classes, _ = self.resolve_io(num_classes, input_shape)
        return MLP(**config, num_classes=num_classes)

    def shared_graph(self, num_classes: int | None = None, input_shape=None) -> SharedGraph:
        """Every MLP as :class:`SharedMLP` (depth 10, width 2048), the config an input array."""
        num_classes, input_shape = self.resolve_io(num_classes, input_shape)
        module = SharedMLP(MAX_DEPTH, max(WIDTHS), num_classes)
        return masked_graph(self, module, num_classes, input_shape, _encode, 2 + len(ACTIVATIONS))

    def describe(self, config: Config) -> str:
        c = self.validate(config)
        return f"{c['depth']}x{c['width']} {c['activation']}"

    def size_extremes(self) -> tuple[Config, ...]:
        """The shallowest narrowest and the deepest widest MLP."""
        return (
            {"depth": MIN_DEPTH, "width": min(WIDTHS), "activation": "relu"},
            {"depth": MAX_DEPTH, "width": max(WIDTHS), "activation": "relu"},
        )

    def enumerate(self) -> Iterator[Config]:
        depths = range(MIN_DEPTH, MAX_DEPTH + 1)
        for values in itertools.product(depths, WIDTHS, ACTIVATIONS):
            yield dict(zip(_FIELDS, values, strict=True))
