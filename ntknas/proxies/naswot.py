"""NASWOT (Mellor et al., 2021, "Neural Architecture Search without Training"), a non-NTK reference.

For a batch of N inputs, every ReLU gives each example a binary code ``c`` (which units are
active). The kernel ``K_H = Σ_ReLU c cᵀ + (1 - c)(1 - c)ᵀ`` counts, for each pair of examples, the
units on which their codes agree (``N_A`` minus the Hamming distance), and the score is
``log|det K_H|``: networks whose activation patterns tell the inputs apart score higher.

Modules opt in by sowing, during ``apply``, each ReLU's ``(N, N)`` similarity into the collection
:data:`COLLECTION` (see ``search_spaces.nb201.relu``); a shared graph sows each op's similarity
times its weight, so unused ops add nothing and the kernel is the chosen network's own.

Example:
  >>> fn = naswot_fn(module)            # jitted once per module and shapes
  >>> naswot_score(fn(variables, x))    # log|det K_H|
"""

from __future__ import annotations

import numpy as np

COLLECTION = "naswot"


class NotSownError(ValueError):
    """The module sows no ReLU codes, so NASWOT is undefined for it."""


def naswot_fn(module, train: bool = True):
    """``fn(variables, inputs, *arch) -> K_H`` (N, N): the summed code similarities, jitted.

    Args:
      module: a Flax module that sows into :data:`COLLECTION` (``__call__(x, *arch, train)``).
      train: BatchNorm on batch statistics (as in Mellor et al.'s code) or on its running ones.

    Raises:
      NotSownError (when called): the module sows nothing, so NASWOT is undefined for it.
    """
    import jax

    @jax.jit
    def similarities(variables, inputs, *arch):
        mutable = [COLLECTION, "batch_stats"] if train else [COLLECTION]
        _, sown = module.apply(variables, inputs, *arch, train=train, mutable=mutable)
        leaves = jax.tree.leaves(sown.get(COLLECTION, {}))
        if not leaves:
            return None
        return sum(leaves[1:], leaves[0])

    def fn(variables, inputs, *arch):
        k = similarities(variables, inputs, *arch)
        if k is None:
            raise NotSownError(
                f"{type(module).__name__} sows no ReLU codes into {COLLECTION!r}; "
                "NASWOT needs a module that does (see ntknas.proxies.naswot)"
            )
        return np.asarray(k)

    return fn


def naswot_score(kernel) -> float:
    """``log|det K_H|`` of an (N, N) code-similarity kernel, in float64 (``-inf`` if singular)."""
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"NASWOT needs a square (N, N) kernel, got shape {k.shape}")
    sign, logdet = np.linalg.slogdet(k)
    return float(logdet) if sign != 0 else float("-inf")
