"""Per-block kernels against the full kernel, side by side in one run, on a vit masked graph.

Compiles the full structured-derivatives kernel and the per-block one (``param_blocks=vit_block``:
attention, MLP, embedding, head, norm) of the space's shared graph at 32x32 (patch 8), Gaussian
data, batch 4, 10 logits, and runs both on the same seeded candidates. Prints each compile time,
the run times (median) and how far the blocks' sum is from the full kernel.

Run: ``python experiments/block_cost.py --space vit-tiny --candidates 4``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from search_speed import candidates  # noqa: E402

from ntknas import data, ntk  # noqa: E402
from search_spaces import get_space  # noqa: E402
from search_spaces.vit import param_block as vit_block  # noqa: E402

SHAPE = (32, 32, 3)


def graph_candidates(space_name: str, n: int):
    """``(f, [((x, arch), params), ...])``: the space's masked graph as ``f(params, (x, arch))``
    at 32x32, Gaussian data, batch 4, 10 logits, and ``n`` seeded random candidates (their own
    float32 initial values placed in the graph, seed 0)."""
    space = get_space(space_name)
    graph = space.shared_graph(10, SHAPE)
    module = graph.module
    x = jnp.asarray(data.load_batch("gaussian", 4, SHAPE, 0), jnp.float32)

    def f(params, xs):
        inputs, arch = xs
        return module.apply({"params": params}, inputs, arch)

    inputs = []
    for c in (space.validate(c) for c in candidates(space, n, 0)):
        variables = graph.init_own(jax.random.PRNGKey(0), x[:1], c)
        params = jax.tree.map(lambda a: a.astype(jnp.float32), variables["params"])
        inputs.append(((x, jnp.asarray(graph.encode(c), jnp.float32)), params))
    return f, inputs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="vit-tiny")
    ap.add_argument("--candidates", type=int, default=4)
    args = ap.parse_args(argv)
    f, inputs = graph_candidates(args.space, args.candidates)
    full = []
    for name, extra in (("full kernel", {}), ("per-block kernels", {"param_blocks": vit_block})):
        kernel_fn = ntk.ntk_fn(
            f, method="structured_derivatives", vmap_axes=((0, None), 0), **extra
        )
        t0 = time.perf_counter()
        exe = kernel_fn.compile(*inputs[0][:1], None, inputs[0][1])
        compile_s = time.perf_counter() - t0
        times, errors = [], []
        for i, (xs, params) in enumerate(inputs):
            t0 = time.perf_counter()
            k = jax.block_until_ready(exe(xs, None, params))
            times.append(time.perf_counter() - t0)
            if extra:
                total = sum(np.asarray(v, np.float64) for v in k.values())
                errors.append(float(np.abs(total - full[i]).max() / np.abs(full[i]).max()))
            else:
                full.append(np.asarray(k, np.float64))
        line = f"{name:18s} compile {compile_s:6.1f} s  run median {statistics.median(times):.2f} s"
        line += f"  (each: {', '.join(f'{t:.2f}' for t in times)})"
        if errors:
            line += f"  max |sum of blocks - full| / max |full| {max(errors):.1e}"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
