"""The only module in ntknas that may touch JAX internals (jax.extend, jax.core, jax._src).

Every shim names the JAX versions it serves. Tested: jax 0.10.x (CPU) and 0.11.x (GPU image).
"""

from __future__ import annotations
