"""Trace (lower), compile and run time of the structured-derivatives NTK kernel for one candidate.

In a search, a candidate's time is dominated by tracing + compiling the kernel, not by running it.
This measures each phase for one vit-small candidate and one nb201 cell (scoring's setup: float32,
N=4, O=10, 32x32 inputs, kernel jitted over (params, state, inputs)), plus the size of the lowered
program (StableHLO ops) and the Python-side profile of the lowering when ``--profile`` is given.

Usage:
  python experiments/sd_trace_time.py                       # both models, one line each
  python experiments/sd_trace_time.py --model vit-small --profile 25
  python experiments/sd_trace_time.py --model nb201 --bn train
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import re
import time

import jax
import jax.numpy as jnp

from ntknas import ntk
from search_spaces import get_space

MODELS = {
    # one mid-size AutoFormer-S candidate (embed 384, depth 13, mixed heads and MLP ratios)
    "vit-small": {
        "embed_dim": 384,
        "depth": 13,
        "heads": [6, 5, 7, 6, 6, 5, 7, 6, 6, 5, 7, 6, 6],
        "mlp_ratio": [4.0, 3.5, 3.0, 4.0, 3.5, 3.0, 4.0, 3.5, 3.0, 4.0, 3.5, 3.0, 4.0],
    },
    "nb201": {"cell": "320140"},
}


def setup(model: str, bn: str, batch: int, classes: int, size: int):
    space = get_space(model)
    module = space.build(MODELS[model], num_classes=classes, input_shape=(size, size, 3))
    x = jax.random.normal(jax.random.PRNGKey(0), (batch, size, size, 3), jnp.float32)
    variables = module.init(jax.random.PRNGKey(1), x)
    params = variables["params"]
    state = {k: v for k, v in variables.items() if k != "params"}
    if bn == "train":

        def f(p, xs):
            variables = {"params": p, **xs[1]}
            return module.apply(variables, xs[0], train=True, mutable=["batch_stats"])[0]

        vmap_axes = None
    else:

        def f(p, xs):
            return module.apply({"params": p, **xs[1]}, xs[0])

        vmap_axes = ((0, None), 0)
    kernel_fn = ntk.ntk_fn(f, method="structured_derivatives", vmap_axes=vmap_axes)

    def kernel(params, state, inputs):
        return kernel_fn((inputs, state), None, params)

    return kernel, (params, state, x)


def hlo_ops(text: str) -> int:
    """Operations in a StableHLO module's text (lines with ``= op`` or a bare op)."""
    return len(re.findall(r"^\s*(?:%\S+ = )?\"?(?:stablehlo|mhlo|chlo)\.", text, re.M))


def measure(model: str, bn: str, batch: int, classes: int, size: int, profile: int) -> dict:
    kernel, args = setup(model, bn, batch, classes, size)
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), args)
    prof = cProfile.Profile() if profile else None
    t0 = time.perf_counter()
    if prof:
        prof.enable()
    lowered = jax.jit(kernel).lower(*abstract)
    if prof:
        prof.disable()
    lower_s = time.perf_counter() - t0
    ops = hlo_ops(lowered.as_text())
    t0 = time.perf_counter()
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(*args))
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    run_s = time.perf_counter() - t0
    if prof:
        pstats.Stats(prof).sort_stats("cumulative").print_stats(profile)
    return {"lower_s": lower_s, "compile_s": compile_s, "run_s": run_s, "hlo_ops": ops}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=sorted(MODELS), action="append")
    ap.add_argument("--bn", choices=("eval", "train"), default="eval")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--profile", type=int, default=0, help="print the top N cProfile lines")
    a = ap.parse_args()
    for model in a.model or sorted(MODELS, reverse=True):
        r = measure(model, a.bn, a.batch, a.classes, a.size, a.profile)
        print(
            f"{model:10s} bn={a.bn} N={a.batch} O={a.classes} {a.size}x{a.size}: "
            f"lower {r['lower_s']:.2f} s, compile {r['compile_s']:.2f} s, run {r['run_s']:.3f} s, "
            f"{r['hlo_ops']} HLO ops",
            flush=True,
        )


if __name__ == "__main__":
    main()
