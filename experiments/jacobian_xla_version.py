"""The same pure-JAX per-example Jacobian, timed in whichever jax runs this script.

Run it with this project's python and with the reference environment's to separate the XLA
version from ntknas in `reference_compare.py`'s CNN Jacobian-contraction gap::

    python experiments/jacobian_xla_version.py
    /tmp/ntref/bin/python experiments/jacobian_xla_version.py

It builds `reference_compare.py`'s CNN W=64, O=10 case (N=8) and times, compile excluded,
median of 3: ``vmap(jacrev)`` over examples, and that Jacobian contracted into the kernel.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def timed(fn, *args) -> float:
    import jax

    exe = jax.jit(fn).lower(*args).compile()
    jax.block_until_ready(exe(*args))
    times = []
    for _ in range(3):
        t = time.perf_counter()
        jax.block_until_ready(exe(*args))
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> int:
    import jax
    import jax.numpy as jnp
    from reference_compare import build

    f, params, x = build("cnn W=64 O=10")

    def jac(x, p):
        return jax.vmap(jax.jacrev(lambda p, xi: f(p, xi[None])[0]), (None, 0))(p, x)

    def kernel(x, p):
        leaves = jax.tree.leaves(jac(x, p))
        return sum(jnp.einsum("ia...,jb...->ijab", a, a) for a in leaves)

    print(f"jax {jax.__version__}")
    print(f"vmap(jacrev) Jacobian: {timed(jac, x, params):.4f} s")
    print(f"Jacobian + contraction: {timed(kernel, x, params):.4f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
