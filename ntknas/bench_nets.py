"""The benchmark's networks as plain jax functions of ``(params, x)``.

They import nothing but jax, so an environment with another jax version (e.g. the reference
implementation's, for ``experiments/reference_compare.py``) runs the very same functions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def fcn_apply(p, x):
    """The paper's Figure 1 network: ReLU layers without bias, ``p`` the list of weights."""
    for w in p[:-1]:
        x = jax.nn.relu(x @ w)
    return x @ p[-1]


def cnn_apply(p, x):
    """3x3 SAME convs (``p["convs"]``, HWIO) with ReLU on NHWC images, global average pooling,
    dense head ``p["head"]``."""
    for w in p["convs"]:
        x = jax.nn.relu(
            jax.lax.conv_general_dilated(
                x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
        )
    return x.mean(axis=(1, 2)) @ p["head"]


def vit_apply(p, x, heads: int = 4, patch: int = 4):
    """A small pre-norm ViT on NHWC images: ``patch``x``patch`` patch embedding (``p["embed"]``,
    (patch·patch·C, D)), a class token and learned positions, ``p["blocks"]`` of multi-head
    self-attention (``qkv`` (D, 3, heads, D/heads), ``out`` (heads, D/heads, D)) and a GELU MLP,
    layer norms with scale and bias, and a dense head on the class token."""
    n, h, w, c = x.shape
    x = x.reshape(n, h // patch, patch, w // patch, patch, c).transpose(0, 1, 3, 2, 4, 5)
    x = x.reshape(n, (h // patch) * (w // patch), patch * patch * c) @ p["embed"]
    cls = jnp.broadcast_to(p["cls"], (n, 1, x.shape[-1]))
    x = jnp.concatenate([cls, x], axis=1) + p["pos"]
    for b in p["blocks"]:
        y = _layer_norm(x, *b["norm1"])
        q, k, v = jnp.einsum("ntd,dahk->anthk", y, b["qkv"])
        att = jax.nn.softmax(jnp.einsum("nthk,nshk->nhts", q, k) / q.shape[-1] ** 0.5)
        y = jnp.einsum("nhts,nshk->nthk", att, v)
        x = x + jnp.einsum("nthk,hkd->ntd", y, b["out"])
        y = _layer_norm(x, *b["norm2"])
        x = x + jax.nn.gelu(y @ b["fc1"] + b["b1"]) @ b["fc2"] + b["b2"]
    return _layer_norm(x[:, 0], *p["norm"]) @ p["head"]


def _layer_norm(x, scale, bias, eps: float = 1e-6):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + eps) * scale + bias
