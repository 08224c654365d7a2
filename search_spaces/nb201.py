"""The NAS-Bench-201 cell space (Dong & Yang, 2020): 5^6 = 15,625 networks.

A config is ``{"cell": "222222"}``: digit i is the operation on edge i of the cell, in the NASLib
encoding of ../shared/data/README.md. The cell's nodes are numbered 1 (input) to 4 (output), the
edges are ordered (1→2), (1→3), (1→4), (2→3), (2→4), (3→4), and each node is the sum of its
incoming edges. Operation codes: 0 skip_connect, 1 none (zero), 2 nor_conv_3x3 (ReLU-Conv3x3-BN),
3 nor_conv_1x1 (ReLU-Conv1x1-BN), 4 avg_pool_3x3. NAS-Bench-201's own architecture strings
(``|nor_conv_3x3~0|+|...|``) list the edges in another order; ``arch_str`` and ``validate``
convert between the two.

The network is NAS-Bench-201's ``TinyNetwork``: stem conv3x3 (16 channels) + BN; three stages of 5
cells with 16, 32, 64 channels; between stages a residual reduction block (a ResNet basic block with
stride 2: ReLU-Conv3x3/2-BN, ReLU-Conv3x3-BN, shortcut avg-pool 2x2 + conv1x1); then BN-ReLU, global
average pooling and a linear classifier. Convs have no bias; weights use PyTorch's default init.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp

from ._base import Config, SearchSpace, check_fields, check_mapping, gather_layers, register
from ._layers import batch_norm, conv, torch_default_init

OPS = ("skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3")
_ABBREV = ("skip", "none", "c3", "c1", "avg")
# (source, target) of each edge, nodes numbered 0..3 here for README's 1..4.
EDGES = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))
STAGE_CHANNELS = (16, 32, 64)
CELLS_PER_STAGE = 5


class ReLUConvBN(nn.Module):
    features: int
    kernel: int
    stride: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = conv(self.features, self.kernel, self.stride)(nn.relu(x))
        return batch_norm(train)(x)


def _apply_op(module: nn.Module, op: str, x: jax.Array, train: bool, name: str) -> jax.Array:
    c = x.shape[-1]
    if op == "skip_connect":
        return x
    if op == "none":
        return jnp.zeros_like(x)
    if op == "nor_conv_3x3":
        return ReLUConvBN(c, 3, parent=module, name=name)(x, train)
    if op == "nor_conv_1x1":
        return ReLUConvBN(c, 1, parent=module, name=name)(x, train)
    if op == "avg_pool_3x3":  # PyTorch AvgPool2d(3, 1, 1, count_include_pad=False)
        return nn.avg_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)
    raise ValueError(f"op={op!r} is not allowed; allowed values: {list(OPS)}")


class Cell(nn.Module):
    """One NAS-Bench-201 cell; ``ops`` are the six edge operations in README edge order."""

    ops: tuple[str, ...]

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        nodes = [x]
        for target in (1, 2, 3):
            incoming = [
                _apply_op(self, self.ops[e], nodes[s], train, name=f"edge{s + 1}{t + 1}")
                for e, (s, t) in enumerate(EDGES)
                if t == target
            ]
            nodes.append(sum(incoming[1:], incoming[0]))
        return nodes[-1]


class ResidualReduction(nn.Module):
    """NAS-Bench-201's ``ResNetBasicblock`` with stride 2."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        y = ReLUConvBN(self.features, 3, 2, name="conv_a")(x, train)
        y = ReLUConvBN(self.features, 3, 1, name="conv_b")(y, train)
        shortcut = nn.avg_pool(x, (2, 2), (2, 2))
        return conv(self.features, 1, name="downsample")(shortcut) + y


class NB201Network(nn.Module):
    """NAS-Bench-201's ``TinyNetwork`` with the same cell in all 15 cell positions."""

    ops: tuple[str, ...]
    num_classes: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = batch_norm(train, name="stem_bn")(conv(STAGE_CHANNELS[0], 3, name="stem")(x))
        for stage, channels in enumerate(STAGE_CHANNELS):
            if stage > 0:
                x = ResidualReduction(channels, name=f"reduction_{stage}")(x, train)
            for i in range(CELLS_PER_STAGE):
                x = Cell(self.ops, name=f"cell_{stage}_{i}")(x, train)
        x = nn.relu(batch_norm(train, name="last_bn")(x))
        x = jnp.mean(x, axis=(1, 2))  # (N, 64)
        return nn.Dense(self.num_classes, kernel_init=torch_default_init, name="classifier")(x)


def arch_str(cell: str) -> str:
    """NAS-Bench-201's architecture string (``|skip_connect~0|+...``) of a README-order cell."""
    ops = {EDGES[e]: OPS[int(d)] for e, d in enumerate(cell)}
    nodes = ["|" + "|".join(f"{ops[(s, t)]}~{s}" for s in range(t)) + "|" for t in range(1, 4)]
    return "+".join(nodes)


def _parse_arch_str(text: str) -> str:
    nodes = text.split("+")
    ops: dict[tuple[int, int], str] = {}
    if len(nodes) != 3:
        raise ValueError(f"cell={text!r} is not a NAS-Bench-201 architecture string")
    for t, node in enumerate(nodes, start=1):
        for item in node.strip("|").split("|"):
            op, _, src = item.partition("~")
            if op not in OPS or not src.isdigit() or int(src) >= t:
                raise ValueError(f"cell={text!r}: bad edge {item!r}; ops are {list(OPS)}")
            ops[(int(src), t)] = op
    if len(ops) != len(EDGES) or set(ops) != set(EDGES):
        raise ValueError(f"cell={text!r} does not name all six edges")
    return "".join(str(OPS.index(ops[edge])) for edge in EDGES)


@register
class NB201Space(SearchSpace):
    """The 15,625 NAS-Bench-201 cells; ``{"cell": "222222"}`` (README edge order, NASLib codes)."""

    name = "nb201"
    default_num_classes = 10
    default_input_shape = (32, 32, 3)
    has_batch_norm = True
    size = len(OPS) ** len(EDGES)

    def suggest(self, trial) -> Config:
        ops = [trial.suggest_categorical(f"edge_{e}", list(OPS)) for e in range(len(EDGES))]
        return {"cell": "".join(str(OPS.index(op)) for op in ops)}

    def validate(self, config: Config) -> Config:
        config = gather_layers(check_mapping(self.name, config), ("edge",))
        if "edge" in config:  # flat trial.params: edge_0..edge_5 hold op names
            edges = config.pop("edge")
            if "cell" in config:
                raise ValueError("give the cell either as 'cell' or as edge_0..edge_5, not both")
            if len(edges) != len(EDGES):
                raise ValueError(f"edge_i: need {len(EDGES)} edges, got {len(edges)}")
            for e, op in enumerate(edges):
                if op not in OPS:
                    raise ValueError(f"edge_{e}={op!r} is not allowed; allowed values: {list(OPS)}")
            config["cell"] = "".join(str(OPS.index(op)) for op in edges)
        check_fields(self.name, config, ("cell",))
        cell = config["cell"]
        if isinstance(cell, str) and cell.startswith("|"):
            cell = _parse_arch_str(cell)
        allowed_digits = "".join(str(i) for i in range(len(OPS)))
        if (
            not isinstance(cell, str)
            or len(cell) != len(EDGES)
            or any(d not in allowed_digits for d in cell)
        ):
            raise ValueError(
                f"cell={cell!r} is not allowed; allowed values: a string of {len(EDGES)} digits "
                f"0-4 ({', '.join(f'{i} {op}' for i, op in enumerate(OPS))}), e.g. '222222'"
            )
        return {"cell": cell}

    def build(self, config: Config, num_classes: int | None = None, input_shape=None):
        cell = self.validate(config)["cell"]
        num_classes, _ = self.resolve_io(num_classes, input_shape)
        return NB201Network(ops=tuple(OPS[int(d)] for d in cell), num_classes=num_classes)

    def describe(self, config: Config) -> str:
        cell = self.validate(config)["cell"]
        return f"{cell} ({' '.join(_ABBREV[int(d)] for d in cell)})"

    def enumerate(self) -> Iterator[Config]:
        for digits in itertools.product(range(len(OPS)), repeat=len(EDGES)):
            yield {"cell": "".join(map(str, digits))}
