"""Masked graphs: a width/depth space's largest network computes any of its networks exactly.

The candidate's shape is an input array (``arch``), never a constant, so one compiled kernel
serves the whole space. Three devices make the largest network compute a smaller one:

- **Activation masks.** Every layer's output is multiplied by a 0/1 mask of its active
  channels/units/tokens, so an inactive unit outputs 0 and an inactive input feeds 0 into the next
  layer. A parameter that touches an inactive unit then has exactly zero gradient (its output is
  masked, or its input is 0), so it adds nothing to the NTK, while every layer still consumes its
  parameter directly (``x @ W``, ``conv(x, K)``): structured derivatives keep their small factors.
  Masking the parameters themselves (``(M ⊙ W)``) would be exact too, but makes ``M ⊙ W`` the
  consumer of ``W``, whose cotangent is as large as ``W`` for every output: the cost of the full
  Jacobian.
- **Identity for inactive layers**: ``h = on * layer(h) + (1 - on) * h`` with ``on`` in {0, 1},
  exact in floating point.
- **Exact one-hot mixtures** of alternatives (activations, patch stems, block types):
  ``Σ_k a_k g_k(h)`` with one-hot ``a`` is ``g_j(h)`` exactly.

Normalization statistics are taken over active channels only (LayerNorm's ``mask``); BatchNorm
normalizes each channel by its own statistics, so inactive channels never reach active ones.

Initialization (:func:`scaled_init`): each kernel is drawn at the largest shape, scaled by the
candidate's own fan-in/fan-out (computed from ``arch``) and multiplied by its own region (0
elsewhere), so ``jax.jit(module.init)(key, x, arch)`` compiles once per space and gives every
candidate parameters with the distribution of its own network's ``init``. The values differ from
``build(config).init(key, x)`` for the same key (a larger shape is drawn, then sliced).

A config's own variables are the leading slices of the shared ones (:func:`select_prefix`,
:func:`embed_prefix`), under a path given by the space's ``rename``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from ._base import Config, SharedGraph

# jax.nn.initializers.variance_scaling's truncated normal: the std of a standard normal truncated
# to [-2, 2], so that the drawn values have the requested variance.
_TRUNCATED_STD = 0.87962566103423978


def prefix_mask(size: int, active, dtype) -> jax.Array:
    """``(size,)`` 0/1: the first ``active`` entries are 1 (``active`` may be a traced scalar)."""
    return (jnp.arange(size) < active).astype(dtype)


def scaled_init(distribution: str, variance, m_in=None, m_out=None, on=1.0) -> Callable:
    """A Flax initializer: ``distribution`` at ``variance`` on the own entries, 0 elsewhere.

    Args:
      distribution: ``"normal"``, ``"truncated_normal"`` or ``"uniform"``, as
        ``jax.nn.initializers.variance_scaling`` draws them.
      variance: the candidate's own variance (e.g. ``gain / fan_in``), a traced scalar.
      m_in, m_out: 0/1 masks of the active inputs (the kernel's second-to-last axis) and outputs
        (its last axis); None means all active.
      on: 0 for a layer the candidate does not have.

    The region is formed inside the initializer, so ``apply`` never computes it.
    """

    def init(key, shape, dtype=jnp.float32):
        if distribution == "normal":
            unit = jax.random.normal(key, shape, dtype)
        elif distribution == "truncated_normal":
            unit = jax.random.truncated_normal(key, -2.0, 2.0, shape, dtype) / _TRUNCATED_STD
        elif distribution == "uniform":
            unit = jax.random.uniform(key, shape, dtype, -1.0, 1.0) * np.sqrt(3.0)
        else:
            raise ValueError(f"unknown distribution {distribution!r}")
        region = on
        if m_in is not None:
            region = region * m_in[:, None]
        if m_out is not None:
            region = region * m_out
        return (unit * jnp.sqrt(variance) * region).astype(dtype)

    return init


def mix(weights: jax.Array, values) -> jax.Array:
    """``Σ_k weights[k] · values[k]``: with one-hot weights, exactly the chosen value."""
    out = weights[0] * values[0]
    for k in range(1, len(values)):
        out = out + weights[k] * values[k]
    return out


def gate(on, new: jax.Array, old: jax.Array) -> jax.Array:
    """``new`` where ``on`` is 1, ``old`` where it is 0 (an inactive layer is the identity)."""
    return on * new + (1 - on) * old


def _flat(tree) -> dict:
    return traverse_util.flatten_dict(tree)


def select_prefix(shared: dict, own_shapes: dict, rename: Callable[[tuple], tuple]) -> dict:
    """The own variables: for each own leaf, the leading slice of the shared leaf it maps to."""
    flat = _flat(shared)
    out = {}
    for path, leaf in _flat(own_shapes).items():
        big = flat[rename(path)]
        if len(big.shape) != len(leaf.shape) or any(
            a > b for a, b in zip(leaf.shape, big.shape, strict=True)
        ):
            raise ValueError(f"{'/'.join(path)}: own shape {leaf.shape} is not within {big.shape}")
        out[path] = big[tuple(slice(0, n) for n in leaf.shape)]
    return traverse_util.unflatten_dict(out)


def embed_prefix(own: dict, shared_shapes: dict, rename: Callable[[tuple], tuple]) -> dict:
    """Shared variables: zeros, with each own leaf placed as the leading slice of its shared leaf.

    Raises:
      ValueError: an own leaf with no shared leaf, or one that does not fit in it.
    """
    shapes = _flat(shared_shapes)
    out = {path: np.zeros(s.shape, s.dtype) for path, s in shapes.items()}
    for path, leaf in _flat(own).items():
        target = rename(path)
        if target not in out:
            raise ValueError(f"{'/'.join(path)} has no place in the shared graph")
        big = out[target]
        leaf = np.asarray(leaf)
        if leaf.ndim != big.ndim or any(a > b for a, b in zip(leaf.shape, big.shape, strict=True)):
            raise ValueError(f"{'/'.join(path)}: own shape {leaf.shape} is not within {big.shape}")
        if big.dtype != leaf.dtype:
            out[target] = big = big.astype(leaf.dtype)
        big[tuple(slice(0, n) for n in leaf.shape)] = leaf
    return jax.tree.map(jnp.asarray, traverse_util.unflatten_dict(out))


def masked_graph(
    space,
    module,
    num_classes: int,
    input_shape: tuple[int, int, int],
    encode: Callable[[Config], np.ndarray],
    arch_size: int,
    rename: Callable[[tuple, Config], tuple] = lambda path, config: path,
) -> SharedGraph:
    """The :class:`SharedGraph` of a masked ``module`` (``__call__(x, arch, train)``).

    Args:
      space: the space (``validate`` and ``build`` give a config's own network).
      module: the largest network, masked by ``arch``.
      num_classes, input_shape: as resolved by ``space.resolve_io``.
      encode: ``encode(validated config) -> arch`` (numpy); ValueError for a config the graph
        does not hold.
      arch_size: the length of every ``arch``.
      rename: the shared path of an own variable's path (a tuple of names, collection first).
    """
    init_jit = jax.jit(module.init)
    x_shape = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    shapes: dict = {}

    def shared_shapes():
        if not shapes:
            arch = jax.ShapeDtypeStruct((arch_size,), jnp.float32)
            shapes.update(jax.eval_shape(module.init, jax.random.PRNGKey(0), x_shape, arch))
        return shapes

    def encode_checked(config):
        return encode(space.validate(config))

    def own_shapes(config):
        own = space.build(config, num_classes, input_shape)
        return jax.eval_shape(own.init, jax.random.PRNGKey(0), x_shape)

    def select(variables, config):
        config = space.validate(config)
        return select_prefix(variables, own_shapes(config), lambda p: rename(p, config))

    def embed(own, config):
        config = space.validate(config)
        return embed_prefix(own, shared_shapes(), lambda p: rename(p, config))

    def init_own(key, x, config):
        arch = encode_checked(config)
        return init_jit(key, jnp.asarray(x), jnp.asarray(arch, jnp.result_type(x)))

    return SharedGraph(
        module=module,
        init=None,
        encode=encode_checked,
        select=select,
        embed=embed,
        init_own=init_own,
    )
