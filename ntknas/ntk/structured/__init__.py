"""Structured derivatives (paper §3.4, §4, appendices C-D): not implemented yet."""

from __future__ import annotations

AVAILABLE = False


def leaf_kernel(f, x1, x2, params, axes, batching):
    raise NotImplementedError(
        "method='structured_derivatives' is not implemented yet; use 'jacobian_contraction', "
        "'ntk_vector_products' or 'auto'"
    )
