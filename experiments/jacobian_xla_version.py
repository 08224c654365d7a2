"""The same pure-JAX per-example Jacobian and NTK-vector products, timed in whichever jax runs
this script.

Run it with this project's python and with the reference environment's to separate the XLA
version from ntknas in `reference_compare.py`'s CNN Jacobian-contraction and NTK-vector-product
gaps::

    python experiments/jacobian_xla_version.py
    /tmp/ntref/bin/python experiments/jacobian_xla_version.py

It builds `reference_compare.py`'s CNN W=64, O=10 case (N=8) and times, compile excluded,
median of 3: ``vmap(jacrev)`` over examples, that Jacobian contracted into the kernel, and the
NTK-vector-product kernel as the reference builds it (per pair of examples, the Jacobian of the
linear map v -> J1 J2^T v), with XLA's FLOP count of that form and, where ntknas is importable,
of ntknas's NTK-vector products. It then times the convolutions inside that Jacobian one by one
(64 -> 64 channels, 3x3, 32x32, N=8 examples, O=10 basis vectors):

- the weight cotangent per example and basis vector, as ``vmap(vjp)`` makes it (JAX's transpose
  rule batched over examples: one convolution with ``feature_group_count=N``);
- the same values from ``conv_general_dilated_patches`` and one batched contraction;
- the input cotangent (a convolution over N*O images) with its GFLOP/s, a matrix product of the
  same FLOPs, and the forward convolution (N images).
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import numpy as np

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


def _ntknas_runs() -> bool:
    """Whether ntknas can run under this jax (pyproject: jax >= 0.10); the path insert above
    makes it importable in the reference's environment too, whose jax 0.4.25 cannot run it."""
    import jax

    major, minor = (int(p) for p in jax.__version__.split(".")[:2])
    return (major, minor) >= (0, 10)


def gflop(fn, *args) -> float:
    """XLA's FLOP count of the compiled ``fn``, in GFLOP."""
    import jax

    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost  # a list of one dict in jax 0.4.25
    return cost["flops"] / 1e9


def main() -> int:
    import jax
    import jax.numpy as jnp
    from reference_compare import build

    f, params, x = build("cnn W=64 O=10")

    def single(p, xi):  # f on one example, without its batch axis
        return f(p, xi[None])[0]

    def jac(x, p):
        return jax.vmap(jax.jacrev(single), (None, 0))(p, x)

    def kernel(x, p):
        leaves = jax.tree.leaves(jac(x, p))
        return sum(jnp.einsum("ia...,jb...->ijab", a, a) for a in leaves)

    def ntk_vp(x, p):
        def pair(x1, x2):
            def linear(v):
                cotangent = jax.vjp(lambda q: single(q, x2), p)[1](v)[0]
                return jax.jvp(lambda q: single(q, x1), (p,), (cotangent,))[1]

            out = jax.eval_shape(single, p, x2)
            return jax.jacfwd(linear)(jnp.ones(out.shape, out.dtype))

        return jax.vmap(lambda a: jax.vmap(lambda b: pair(a, b))(x))(x)

    print(f"jax {jax.__version__}")
    print(f"vmap(jacrev) Jacobian: {timed(jac, x, params):.4f} s")
    print(f"Jacobian + contraction: {timed(kernel, x, params):.4f} s")
    print(
        f"NTK-vector products (per pair, reference's form): {timed(ntk_vp, x, params):.4f} s, "
        f"{gflop(ntk_vp, x, params):.1f} GFLOP"
    )
    if _ntknas_runs():  # ntknas's own NTK-vector products (not in the reference's env)
        from ntknas import ntk

        ours = ntk.ntk_fn(f, method="ntk_vector_products", vmap_axes=0)
        print(f"ntknas NTK-vector products: {ours.flops(x, None, params) / 1e9:.1f} GFLOP")

    rng = np.random.default_rng(0)
    n, o, c = 8, 10, 64
    acts = jnp.asarray(rng.standard_normal((n, 32, 32, c)), jnp.float32)
    cots = jnp.asarray(rng.standard_normal((n, o, 32, 32, c)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((3, 3, c, c)) / np.sqrt(9 * c), jnp.float32)
    dims = ("NHWC", "HWIO", "NHWC")

    def conv(a, k):
        return jax.lax.conv_general_dilated(a, k, (1, 1), "SAME", dimension_numbers=dims)

    def weight_cotangent_vjp(a, g):
        def one(ai, gi):  # one example, one basis vector
            return jax.vjp(lambda k: conv(ai[None], k), w)[1](gi[None])[0]

        return jax.vmap(lambda ai, gn: jax.vmap(lambda gi: one(ai, gi))(gn))(a, g)

    def weight_cotangent_patches(a, g):
        patches = jax.lax.conv_general_dilated_patches(
            a, (3, 3), (1, 1), "SAME", dimension_numbers=dims
        )  # (N, H, W, C*9), the feature dimension ordered (C, kh, kw)
        k = jnp.einsum("nhwf,nohwd->nofd", patches, g)
        return jnp.moveaxis(k.reshape(n, o, c, 3, 3, c), 2, 4)  # (N, O, kh, kw, C_in, C_out)

    a_vjp = np.asarray(jax.jit(weight_cotangent_vjp)(acts, cots))
    a_patches = np.asarray(jax.jit(weight_cotangent_patches)(acts, cots))
    diff = np.abs(a_vjp - a_patches).max() / np.abs(a_vjp).max()
    t_vjp = timed(weight_cotangent_vjp, acts, cots)
    t_patches = timed(weight_cotangent_patches, acts, cots)
    t_input = timed(conv, cots.reshape(n * o, 32, 32, c), w)
    print(f"weight cotangent, vmap(vjp) (grouped conv): {t_vjp:.4f} s")
    print(f"weight cotangent, patches + contraction: {t_patches:.4f} s (max rel diff {diff:.1e})")
    conv_flops = 2 * n * o * 32 * 32 * c * c * 9
    print(
        f"input cotangent, conv over N*O images: {t_input:.4f} s "
        f"({conv_flops / t_input / 1e9:.0f} GFLOP/s)"
    )
    # the same FLOPs as one matrix product: what the CPU reaches outside a convolution
    lhs = jnp.asarray(rng.standard_normal((n * o * 32 * 32, 9 * c)), jnp.float32)
    t_matmul = timed(jnp.matmul, lhs, w.reshape(9 * c, c))
    print(f"matmul of the same FLOPs: {t_matmul:.4f} s ({conv_flops / t_matmul / 1e9:.0f} GFLOP/s)")
    print(f"forward conv, N images: {timed(conv, acts, w):.4f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
