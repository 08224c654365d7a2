"""The benchmark's networks as plain jax functions of ``(params, x)``.

They import nothing but jax, so an environment with another jax version (e.g. the reference
implementation's, for ``experiments/reference_compare.py``) runs the very same functions.
"""

from __future__ import annotations

import jax


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
