"""Dtypes and matmul precision shared by every method and by the NTK-vector-product operator."""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Matmul precisions a caller may ask for (the strings of ``jax.default_matmul_precision``).
# "highest" (the default) keeps every contraction at full float32 whatever the global setting
# says: on recent NVIDIA GPUs JAX's default float32 matmul is TF32 (about 1e-3 relative error),
# which would turn a proxy that reads the smallest eigenvalue into rounding noise.
PRECISIONS = (
    "highest",
    "float32",
    "high",
    "bfloat16_3x",
    "tensorfloat32",
    "default",
    "bfloat16",
)


def is_floating(dtype) -> bool:
    """True for every floating dtype, bfloat16 included (``np.issubdtype`` says no to it)."""
    return bool(jnp.issubdtype(dtype, jnp.inexact))


def promote_half(tree):
    """Floating leaves narrower than float32 (bfloat16, float16) promoted to float32."""

    def up(a):
        dt = jnp.dtype(a.dtype)
        return a.astype(jnp.float32) if is_floating(dt) and dt.itemsize < 4 else a

    return None if tree is None else jax.tree.map(up, tree)


def matmul_precision(precision: str):
    # The setting is read when each dot_general is traced, so entering it inside the traced
    # function fixes the precision of the kernel's contractions (and of f's own matmuls that
    # name none); the caller's setting outside is left as it was.
    return jax.default_matmul_precision(precision)
