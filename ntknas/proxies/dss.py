"""TF-TAS's DSS indicator (Zhou et al., "Training-free Transformer Architecture Search", CVPR
2022): a reference proxy for Vision Transformers.

SynFlow's pass (every parameter replaced by ``|θ|``, one all-ones input, ``R`` the sum of the
outputs, ``g = ∂R/∂|θ|``), read differently per layer as in TF-TAS's public code:

- multi-head self-attention (the qkv and output-projection weights): the *synaptic diversity*
  ``‖g‖_* · ‖|W|‖_*`` (nuclear norms of the weight as a matrix, inputs by outputs);
- the MLP weights (``fc1``, ``fc2``) and the classifier: the *synaptic saliency* ``Σ |W ⊙ g|``;
- biases, norms, the patch embedding, tokens and relative-position tables do not count.

DSS is the sum over those layers. The layers are found by the parameter names of the vit spaces'
networks (``Attention_0/{qkv,proj}``, ``fc1``, ``fc2``, ``head``); on the masked shared graph
the inactive parts of every weight are 0 with zero gradient, so the nuclear norms and sums equal
the own network's. Compute in float64 (``jax_enable_x64``), as SynFlow.

Example:
  >>> fn = dss_fn(module, input_shape)
  >>> fn(params, state)                 # a float
"""

from __future__ import annotations

from ..ntk import path_keys
from .synflow import positive_pass_fn

ATTENTION = ("qkv", "proj")  # layers of Attention_0 read by their synaptic diversity
SALIENT = ("fc1", "fc2", "head")  # layers read by their synaptic saliency


class NotAViTError(ValueError):
    """The network has no attention or no MLP layers named as in the vit spaces."""


def layer_kind(path: tuple) -> str | None:
    """``"diversity"``, ``"saliency"`` or None for a parameter path (plain keys)."""
    keys = [str(k) for k in path]
    if not keys or keys[-1] != "kernel" or len(keys) < 2:
        return None
    if keys[-2] in ATTENTION and "Attention_0" in keys:
        return "diversity"
    if keys[-2] in SALIENT:
        return "saliency"
    return None


def dss_fn(module, input_shape, dtype=None):
    """``fn(params, state, *arch) -> float``: the DSS indicator, jitted once per module and shape.

    Args:
      module: a Flax module of a vit space, ``__call__(x, *arch, train=False)``.
      input_shape: (H, W, C) of one example.
      dtype: of the computation; default float64 when ``jax_enable_x64`` is on, else float32.

    The returned function raises :class:`NotAViTError` for parameters without attention or
    MLP layers.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    def reduce(flat):
        """(saliency sum, [(|W|, g) of the attention layers]): the nuclear norms follow in
        numpy, from the eigenvalues of Gram matrices (cheaper than SVDs)."""
        saliency, pairs = jnp.zeros(()), []
        for path, w, g in flat:
            kind = layer_kind(path_keys(path))
            if kind == "diversity":
                pairs.append((w.reshape(w.shape[0], -1), g.reshape(g.shape[0], -1)))
            elif kind == "saliency":
                saliency = saliency + jnp.sum(jnp.abs(w * g))
        return saliency, pairs

    score = positive_pass_fn(module, input_shape, reduce, dtype)

    def nuclear(a) -> float:
        """Σ singular values, as Σ sqrt(eigenvalues) of the smaller Gram matrix (float64)."""
        a = np.asarray(a, np.float64)
        gram = a @ a.T if a.shape[0] <= a.shape[1] else a.T @ a
        return float(np.sqrt(np.clip(np.linalg.eigvalsh(gram), 0.0, None)).sum())

    def fn(params, state, *arch) -> float:
        kinds = {
            layer_kind(path_keys(p)) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]
        }
        if not {"diversity", "saliency"} <= kinds:
            raise NotAViTError("DSS needs attention (Attention_0/qkv, proj) and MLP (fc1, fc2)")
        saliency, pairs = score(params, state, *arch)
        return float(saliency) + sum(nuclear(g) * nuclear(w) for w, g in pairs)

    return fn
