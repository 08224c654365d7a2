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

import functools
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
    check_fields,
    check_mapping,
    gather_layers,
    register,
)
from ._layers import BN_EPSILON, batch_norm, conv, torch_default_init

OPS = ("skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3")
_ABBREV = ("skip", "none", "c3", "c1", "avg")
# (source, target) of each edge, nodes numbered 0..3 here for README's 1..4.
EDGES = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))
STAGE_CHANNELS = (16, 32, 64)
CELLS_PER_STAGE = 5


# NASWOT (Mellor et al., 2021) reads the binary codes of every ReLU's input. Modules sow, per ReLU,
# the (N, N) similarity c cᵀ + (1 - c)(1 - c)ᵀ of the codes c into this collection when it is
# mutable in an apply (see ntknas.proxies.naswot); otherwise, and in init, nothing is computed.
NASWOT_COLLECTION = "naswot"


def relu(module: nn.Module, x: jax.Array, weight: jax.Array | float = 1.0) -> jax.Array:
    """``nn.relu(x)``, sowing the NASWOT code similarity of ``x`` times ``weight`` if asked."""
    if module.is_mutable_collection(NASWOT_COLLECTION) and not module.is_initializing():
        codes = (x > 0).reshape(x.shape[0], -1).astype(x.dtype)  # (N, D)
        similarity = codes @ codes.T + (1.0 - codes) @ (1.0 - codes).T  # (N, N)
        module.sow(NASWOT_COLLECTION, "relu_codes", weight * similarity)
    return nn.relu(x)


class ReLUConvBN(nn.Module):
    features: int
    kernel: int
    stride: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool, weight: jax.Array | float = 1.0) -> jax.Array:
        x = conv(self.features, self.kernel, self.stride)(relu(self, x, weight))
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
    if op == "avg_pool_3x3":
        return _avg_pool_3x3(x)
    raise ValueError(f"op={op!r} is not allowed; allowed values: {list(OPS)}")


def _avg_pool_3x3(x: jax.Array) -> jax.Array:
    """PyTorch AvgPool2d(3, 1, 1, count_include_pad=False), as ``nn.avg_pool`` computes it.

    The window sums are divided by each window's count of real pixels. ``nn.avg_pool`` counts
    them by pooling an array of ones inside the program, which XLA then constant-folds at every
    use (over a second per pool at 32x32 in a kernel's compile); here numpy counts them once.
    """
    window, pads = (1, 3, 3, 1), ((0, 0), (1, 1), (1, 1), (0, 0))
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, (1, 1, 1, 1), pads)
    return total / _window_counts(*x.shape[1:3]).astype(x.dtype)


@functools.cache
def _window_counts(height: int, width: int) -> np.ndarray:
    """(1, H, W, 1): how many pixels of the padded input each 3x3 window covers."""
    inside = np.pad(np.ones((height, width)), 1)
    counts = sum(inside[i : i + height, j : j + width] for i in range(3) for j in range(3))
    return counts[None, :, :, None]


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


CONV_OPS = ("nor_conv_3x3", "nor_conv_1x1")


class _ConvKernel(nn.Module):
    """The ``kernel`` of a bias-free conv (named like ``nn.Conv``'s, so trees match)."""

    shape: tuple[int, ...]

    @nn.compact
    def __call__(self) -> jax.Array:
        return self.param("kernel", torch_default_init, self.shape)


class _BatchNormVariables(nn.Module):
    """``nn.BatchNorm``'s variables (scale, bias; running mean, var), declared, not applied."""

    features: int

    @nn.compact
    def __call__(self) -> tuple[jax.Array, ...]:
        mean = self.variable("batch_stats", "mean", jnp.zeros, (self.features,))
        var = self.variable("batch_stats", "var", jnp.ones, (self.features,))
        scale = self.param("scale", nn.initializers.ones, (self.features,))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        return scale, bias, mean.value, var.value


class _ConvBNVariables(nn.Module):
    """The variables of one edge's ``ReLUConvBN`` op, in that op's own tree."""

    features: int
    kernel: int

    @nn.compact
    def __call__(self) -> tuple[jax.Array, ...]:
        shape = (self.kernel, self.kernel, self.features, self.features)
        kernel = _ConvKernel(shape, name="Conv_0")()
        return (kernel, *_BatchNormVariables(self.features, name="BatchNorm_0")())


def _conv3x3(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """``conv(features, 3)`` of NHWC ``x`` with ``kernel``, dtypes promoted as ``nn.Conv`` does."""
    dtype = jnp.promote_types(x.dtype, kernel.dtype)
    dims = ("NHWC", "HWIO", "NHWC")
    x, kernel = x.astype(dtype), kernel.astype(dtype)
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), ((1, 1), (1, 1)), dimension_numbers=dims)


def _batch_norm(y, train: bool, scale, bias, mean, var) -> jax.Array:
    """``batch_norm``'s ``nn.BatchNorm`` of NHWC ``y``, in Flax's order of operations."""
    if train:  # batch statistics, Flax's fast variance
        mean = jnp.mean(y, axis=(0, 1, 2))
        var = jnp.maximum(0.0, jnp.mean(y * y, axis=(0, 1, 2)) - mean * mean)
    return (y - mean) * (jax.lax.rsqrt(var + BN_EPSILON) * scale) + bias


class SharedCell(nn.Module):
    """A cell whose every edge selects its op by an input weight array, with one conv per edge.

    Edge e outputs ``w_skip · x + w_avg · avgpool(x) + ReLUConvBN(x)`` where the conv's kernel is
    ``w_c3 · K3 + w_c1 · K1`` (``K1`` padded to 3x3 at its centre; a 3x3 conv whose outer taps are
    zero is the 1x1 conv) and BatchNorm's scale, shift and running statistics mix the same way.
    With a one-hot row ``weights[e]`` this is the own edge's op exactly (unused terms are exact
    zeros), the unused op's parameters get zero gradient, and the edge computes one conv, not the
    two of every conv op. The variables of the conv op ``op`` on edge (s→t) are named
    ``edge{s}{t}_{op}`` and hold the own op's tree (``Conv_0``, ``BatchNorm_0``).
    """

    @nn.compact
    def __call__(self, x: jax.Array, weights: jax.Array, train: bool = False) -> jax.Array:
        """``x``: (N, H, W, C); ``weights``: (6, 5), rows in README edge order, columns ``OPS``."""
        assert weights.shape == (len(EDGES), len(OPS)), f"weights {weights.shape} != (6, 5)"
        c = x.shape[-1]
        nodes = [x]
        for target in (1, 2, 3):
            total = jnp.zeros_like(x)
            for e, (s, t) in enumerate(EDGES):
                if t != target:
                    continue
                h, w = nodes[s], weights[e]
                w3, w1 = w[OPS.index("nor_conv_3x3")], w[OPS.index("nor_conv_1x1")]
                k3, *bn3 = _ConvBNVariables(c, 3, name=f"edge{s + 1}{t + 1}_nor_conv_3x3")()
                k1, *bn1 = _ConvBNVariables(c, 1, name=f"edge{s + 1}{t + 1}_nor_conv_1x1")()
                # mixed in the variables' dtype (exact for one-hot weights), as the own op sees them
                k1 = jnp.pad(k1, ((1, 1), (1, 1), (0, 0), (0, 0)))  # its taps at the centre
                kernel = (w3 * k3 + w1 * k1).astype(k3.dtype)
                bn = [(w3 * a + w1 * b).astype(a.dtype) for a, b in zip(bn3, bn1, strict=True)]
                y = _conv3x3(relu(self, h, w3 + w1), kernel)
                total = total + w[OPS.index("skip_connect")] * h  # "none" adds nothing
                total = total + w[OPS.index("avg_pool_3x3")] * _avg_pool_3x3(h)
                total = total + _batch_norm(y, train, *bn)
            nodes.append(total)
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


def _tiny_network(module: nn.Module, x, train: bool, num_classes: int, cell) -> jax.Array:
    """The ``TinyNetwork`` body around ``cell(name, x) -> x``; called inside a compact method."""
    x = batch_norm(train, name="stem_bn")(conv(STAGE_CHANNELS[0], 3, name="stem")(x))
    for stage, channels in enumerate(STAGE_CHANNELS):
        if stage > 0:
            x = ResidualReduction(channels, name=f"reduction_{stage}")(x, train)
        for i in range(CELLS_PER_STAGE):
            x = cell(f"cell_{stage}_{i}", x)
    x = relu(module, batch_norm(train, name="last_bn")(x))
    x = jnp.mean(x, axis=(1, 2))  # (N, 64)
    return nn.Dense(num_classes, kernel_init=torch_default_init, name="classifier")(x)


class NB201Network(nn.Module):
    """NAS-Bench-201's ``TinyNetwork`` with the same cell in all 15 cell positions."""

    ops: tuple[str, ...]
    num_classes: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        def cell(name, h):
            return Cell(self.ops, name=name)(h, train)

        return _tiny_network(self, x, train, self.num_classes, cell)


class SharedNB201Network(nn.Module):
    """Every NAS-Bench-201 network at once: ``TinyNetwork`` of :class:`SharedCell`.

    ``__call__(x, weights, train)`` with one-hot ``weights`` (6, 5) computes the network of that
    cell; the other ops' parameters get zero gradient, so the NTK is the cell's own.
    """

    num_classes: int

    @nn.compact
    def __call__(self, x: jax.Array, weights: jax.Array, train: bool = False) -> jax.Array:
        def cell(name, h):
            return SharedCell(name=name)(h, weights, train)

        return _tiny_network(self, x, train, self.num_classes, cell)


def _shared_init(num_classes: int):
    """init(key, x): shared-graph variables whose every cell's slice equals that cell's own init.

    Flax draws each parameter from its module path, so the conv of edge (s→t) in a standalone
    network with op ``op`` there is the conv of the network whose every edge is ``op``.
    """

    def init(key, x):
        by_op = {op: NB201Network((op,) * len(EDGES), num_classes).init(key, x) for op in CONV_OPS}
        base = by_op[CONV_OPS[0]]
        out = {}
        for col, tree in base.items():
            out[col] = {
                name: (
                    {f"{e}_{op}": by_op[op][col][name][e] for op in CONV_OPS for e in sub}
                    if name.startswith("cell_")
                    else sub
                )
                for name, sub in tree.items()
            }
        return out

    return init


def _select(variables: dict, config: Config) -> dict:
    """The standalone network's variables (same tree and values) inside shared-graph ones."""
    ops = [OPS[int(d)] for d in config["cell"]]
    keep = {f"edge{s + 1}{t + 1}": op for (s, t), op in zip(EDGES, ops, strict=True)}
    out = {}
    for col, tree in variables.items():
        new = {}
        for name, sub in tree.items():
            if name.startswith("cell_"):
                sub = {e: sub[f"{e}_{op}"] for e, op in keep.items() if op in CONV_OPS}
            if sub:
                new[name] = sub
        out[col] = new
    return out


def _encode(config: Config) -> np.ndarray:
    """One-hot op weights (6, 5) of a validated config."""
    return np.eye(len(OPS), dtype=np.float32)[[int(d) for d in config["cell"]]]


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
    # A new cell's own network compiles for as long as the shared graph's kernel runs 5-10
    # times (README.md, "Search speed"; experiments/README.md, "nb201's shared graph"), so only
    # cells under 1/16 of the graph's FLOPs (a conv on at most one edge) are compiled alone.
    shared_flops_max = 16.0

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

    def shared_graph(self, num_classes: int | None = None, input_shape=None) -> SharedGraph:
        """All 15,625 networks as one :class:`SharedNB201Network`, the cell an input array."""
        num_classes, _ = self.resolve_io(num_classes, input_shape)
        return SharedGraph(
            module=SharedNB201Network(num_classes=num_classes),
            init=_shared_init(num_classes),
            encode=lambda config: _encode(self.validate(config)),
            select=lambda variables, config: _select(variables, self.validate(config)),
        )

    def describe(self, config: Config) -> str:
        cell = self.validate(config)["cell"]
        return f"{cell} ({' '.join(_ABBREV[int(d)] for d in cell)})"

    def short(self, config: Config) -> str:
        """The cell string, e.g. ``222110`` (README edge order; digits as in ``OPS``)."""
        return self.validate(config)["cell"]

    def size_extremes(self) -> tuple[Config, ...]:
        """No parametrized op (``none``) on any edge, and a 3x3 conv on every edge."""
        none, conv3 = OPS.index("none"), OPS.index("nor_conv_3x3")
        return ({"cell": str(none) * len(EDGES)}, {"cell": str(conv3) * len(EDGES)})

    def enumerate(self) -> Iterator[Config]:
        for digits in itertools.product(range(len(OPS)), repeat=len(EDGES)):
            yield {"cell": "".join(map(str, digits))}
