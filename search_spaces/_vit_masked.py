"""The masked graph of the vit spaces: AutoFormer's largest network computes any of its subnets.

:class:`SharedViT` is :class:`._autoformer_layers.VisionTransformer` at the space's largest
embedding dimension, depth, heads and MLP width, the candidate an input array (``arch``, see
:func:`encoder`). It follows :mod:`search_spaces._masked`:

- activation masks: embedding channels past ``embed_dim`` are 0 in every token (after the patch
  embedding, the position embedding and every layer's output), heads past ``heads[i]`` output 0
  (their q, k, v and their relative-position term on the values), MLP units past
  ``int(embed_dim * mlp_ratio[i])`` output 0. A parameter of an inactive unit then has exactly zero
  gradient, while each layer still consumes its parameter directly (structured derivatives keep
  their small factors);
- layers past ``depth`` are the identity (:func:`._masked.gate`);
- every LayerNorm takes its mean and variance over the active channels only (Flax's ``mask``) and
  its output is masked;
- the relative-position tables are 64 wide (one head's width) and shared by the heads, as in the
  own network, so they have the own shape in every layer;
- the head reads the mean of the patch tokens, whose inactive channels are 0.

Initialization: the own network's initializers (normal std 0.02; PyTorch's default for the patch
conv, whose fan-in ``p * p * C`` no candidate changes) times the candidate's region, so
``init_own`` draws the own distribution, compiled once per space and input shape.

The own qkv kernel ``(D, 3 * h * 64)`` is not a leading slice of a larger one (its columns run
q, k, v, each over h heads), so the graph holds it as ``(D, 3, heads, 64)`` and ``select`` and
``embed`` reshape between the two.

Only the ``"autoformer"`` variant: in ``"autoprox"`` a head is ``embed_dim / heads`` wide, which
no prefix mask expresses; ``encode`` raises ValueError for it.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from ._autoformer_layers import (
    RelativePosition2D,
    Variant,
    attend,
    normal_init,
    patch_embed,
    relative_position_onehots,
)
from ._base import Config, SharedGraph
from ._masked import gate, masked_graph, prefix_mask, select_prefix


def in_region(init, region):
    """``init`` times ``region`` (broadcast to the drawn shape): 0 outside the candidate's part."""

    def masked(key, shape, *dtype):  # no dtype: the init's own default, as in the own network
        values = init(key, shape, *dtype)
        return (values * region).astype(values.dtype)

    return masked


class MaskedAttention(nn.Module):
    """:class:`._autoformer_layers.Attention` with ``max_heads`` heads of ``head_dim``, masked.

    ``masks = (channels, heads)``: 0/1 over the embedding channels and over the heads.
    """

    max_heads: int
    head_dim: int

    @nn.compact
    def __call__(self, x, onehots, masks, on):
        channels, heads = masks
        n, t, d = x.shape
        h, c = self.max_heads, self.head_dim
        by_head = heads[:, None]  # (h, 1): broadcasts over (..., h, c)
        units = jnp.repeat(heads, c)  # (h * c,): heads -> their columns
        # DenseGeneral draws its kernel flat, (D, 3 * h * c), then reshapes it
        qkv_init = in_region(normal_init, on * channels[:, None] * jnp.tile(units, 3))
        qkv = nn.DenseGeneral((3, h, c), kernel_init=qkv_init, name="qkv")(x) * by_head
        rel_k = rel_v = ()
        if onehots is not None:
            table_init = in_region(normal_init, on)
            rel_k = RelativePosition2D(c, table_init, name="rel_pos_k")(onehots)
            rel_v = RelativePosition2D(c, table_init, name="rel_pos_v")(onehots)
        out = (attend(qkv, rel_k, rel_v) * by_head).reshape(n, t, h * c)
        proj_init = in_region(normal_init, on * units[:, None] * channels)
        return nn.Dense(d, kernel_init=proj_init, name="proj")(out) * channels


class MaskedBlock(nn.Module):
    """:class:`._autoformer_layers.Block` at ``max_heads`` and ``max_hidden`` MLP units, masked.

    ``masks = (channels, heads, units)``; the submodules carry the own block's names.
    """

    max_heads: int
    head_dim: int
    max_hidden: int
    ln_epsilon: float

    @nn.compact
    def __call__(self, x, onehots, masks, on):
        channels, heads, units = masks
        d = x.shape[-1]
        norm = channels.astype(bool)  # statistics over the active channels only

        def layer_norm(name, y):
            return nn.LayerNorm(epsilon=self.ln_epsilon, name=name)(y, mask=norm) * channels

        attn = MaskedAttention(self.max_heads, self.head_dim, name="Attention_0")
        x = x + attn(layer_norm("LayerNorm_0", x), onehots, (channels, heads), on)
        y = layer_norm("LayerNorm_1", x)
        fc1_init = in_region(normal_init, on * channels[:, None] * units)
        y = nn.Dense(self.max_hidden, kernel_init=fc1_init, name="fc1")(y)
        y = nn.gelu(y, approximate=False) * units
        fc2_init = in_region(normal_init, on * units[:, None] * channels)
        return x + nn.Dense(d, kernel_init=fc2_init, name="fc2")(y) * channels


class SharedViT(nn.Module):
    """Every AutoFormer network of a vit space for one input size and patch, masked.

    ``arch`` is ``[embed_dim, depth, heads_0 .. heads_{L-1}, hidden_0 .. hidden_{L-1}]`` with
    ``L = max_depth`` (:func:`encoder`); entries past ``depth`` are 0.

    Attributes:
      max_embed, max_depth, max_heads, max_hidden: the space's largest shapes.
      patch_size, num_classes: as in the own network.
      variant: an ``"autoformer"`` :class:`._autoformer_layers.Variant` (a fixed head width).
    """

    max_embed: int
    max_depth: int
    max_heads: int
    max_hidden: int
    patch_size: int
    num_classes: int
    variant: Variant

    @nn.compact
    def __call__(self, x: jax.Array, arch: jax.Array, train: bool = False) -> jax.Array:
        del train  # no BatchNorm, no dropout
        size = 2 + 2 * self.max_depth
        assert arch.shape == (size,), f"arch {arch.shape} != ({size},)"
        n, _, _, image_channels = x.shape
        e, var, dtype = self.max_embed, self.variant, arch.dtype
        depth, heads, hidden = arch[1], arch[2 : 2 + self.max_depth], arch[2 + self.max_depth :]
        channels = prefix_mask(e, arch[0], dtype)
        x = patch_embed(e, self.patch_size, image_channels, lambda i: in_region(i, channels))(x)
        onehots = None
        if var.max_relative_position is not None:
            onehots = relative_position_onehots(x.shape[1:3], var.max_relative_position, x.dtype)
        x = x.reshape(n, -1, e)
        token_init = in_region(normal_init, channels)
        cls = self.param("cls_token", token_init, (1, 1, e))
        x = jnp.concatenate([jnp.broadcast_to(cls, (n, 1, e)).astype(x.dtype), x], 1)
        x = (x + self.param("pos_embed", token_init, (1, x.shape[1], e))) * channels
        for i in range(self.max_depth):
            on = (i < depth).astype(dtype)
            masks = (
                channels,
                prefix_mask(self.max_heads, heads[i], dtype),
                prefix_mask(self.max_hidden, hidden[i], dtype),
            )
            block = MaskedBlock(
                self.max_heads, var.head_dim, self.max_hidden, var.ln_epsilon, name=f"block_{i}"
            )
            x = gate(on, block(x, onehots, masks, on), x)
        x = nn.LayerNorm(epsilon=var.ln_epsilon, name="norm")(x, mask=channels.astype(bool))
        pooled = x[:, 1:].mean(axis=1) * channels
        head_init = in_region(normal_init, channels[:, None])
        return nn.Dense(self.num_classes, kernel_init=head_init, name="head")(pooled)


def encoder(max_depth: int, patch_size: int, default_variant: str):
    """``encode(validated config) -> arch`` (float32) of :class:`SharedViT`.

    Raises:
      ValueError: a config of another variant or another patch size than the graph's.
    """

    def encode(config: Config) -> np.ndarray:
        variant = config.get("variant", default_variant)
        if variant != default_variant:
            raise ValueError(
                f"variant={variant!r} has no shared graph (its heads split the embedding); "
                f"allowed values: [{default_variant!r}]"
            )
        p = config.get("patch_size", patch_size)
        if p != patch_size:
            raise ValueError(
                f"patch_size={p!r} is not the shared graph's; allowed values: [{patch_size}] "
                f"(the default patch for this input)"
            )
        e, depth = config["embed_dim"], config["depth"]
        pad = [0] * (max_depth - depth)
        hidden = [int(e * float(r)) for r in config["mlp_ratio"]]
        return np.array([e, depth, *config["heads"], *pad, *hidden, *pad], np.float32)

    return encode


def _qkv_layout(tree: dict, head_dim: int, to_graph: bool) -> dict:
    """Own qkv leaves ``(D, 3hc)``, ``(3hc,)`` <-> the graph's ``(D, 3, h, c)``, ``(3, h, c)``."""
    flat = traverse_util.flatten_dict(tree)
    for path, leaf in flat.items():
        if "qkv" not in path:
            continue
        if to_graph:
            shape = (*leaf.shape[:-1], 3, leaf.shape[-1] // (3 * head_dim), head_dim)
        else:
            shape = (*leaf.shape[:-3], int(np.prod(leaf.shape[-3:])))
        flat[path] = (
            jax.ShapeDtypeStruct(shape, leaf.dtype)
            if isinstance(leaf, jax.ShapeDtypeStruct)
            else leaf.reshape(shape)
        )
    return traverse_util.unflatten_dict(flat)


def vit_graph(space, module: SharedViT, num_classes: int, input_shape, encode) -> SharedGraph:
    """The :class:`SharedGraph` of ``module`` for ``space`` (own qkv layouts reshaped)."""
    graph = masked_graph(space, module, num_classes, input_shape, encode, 2 + 2 * module.max_depth)
    head_dim = module.variant.head_dim
    x_shape = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)

    def select(variables, config):
        config = space.validate(config)
        own = space.build(config, num_classes, input_shape)
        shapes = jax.eval_shape(own.init, jax.random.PRNGKey(0), x_shape)
        picked = select_prefix(variables, _qkv_layout(shapes, head_dim, True), lambda p: p)
        return _qkv_layout(picked, head_dim, False)

    def embed(own, config):
        return graph.embed(_qkv_layout(own, head_dim, True), config)

    return dataclasses.replace(graph, select=select, embed=embed)
