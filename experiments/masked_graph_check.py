"""Per-architecture path vs the masked shared graph, on the same seeded candidates (issue 11).

(a) today's path, per candidate: build, eager ``module.init``, compile the kernel, run it;
(b) the masked graph (``space.shared_graph``): compile the kernel once, then per candidate
``init_own`` (one compiled initializer per space) and a run of the same compiled kernel.
Also prints each candidate's forward FLOPs (its own network) against the masked graph's: the
graph computes at the space's largest shape, which is the price of compiling once.

Run: ``python experiments/masked_graph_check.py --space mlp-mixer --candidates 3``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _forward_flops(module, variables, x, *arch) -> float:
    import jax

    def f(v, x, *a):
        return module.apply(v, x, *a)

    cost = jax.jit(f).lower(variables, x[:1], *arch).cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost["flops"])


def _trace(k) -> float:
    return float(np.einsum("iijj->", np.asarray(k)))


def _kernel(module, variables, x, arch, method):
    """A compiled kernel ``run(params, x, *arch)`` of the per-example (BN eval) NTK."""
    from ntknas import ntk

    state = {k: v for k, v in variables.items() if k != "params"}

    def f(params, xs):
        inputs, *a = xs
        return module.apply({"params": params, **state}, inputs, *a)

    axes = ((0,) + (None,) * len(arch), 0)
    exe = ntk.ntk_fn(f, method, vmap_axes=axes).compile((x, *arch), None, variables["params"])
    return lambda params, x, *arch: exe((x, *arch), None, params)


def _print_flops(space, configs, classes, shape, x) -> None:
    import jax
    import jax.numpy as jnp

    graph = space.shared_graph(classes, shape)
    arch = jnp.asarray(graph.encode(configs[0]), jnp.float32)
    x1 = jax.ShapeDtypeStruct((1, *shape), jnp.float32)
    variables = jax.eval_shape(graph.module.init, jax.random.PRNGKey(0), x1, arch)
    masked = _forward_flops(graph.module, variables, x, arch)
    own = []
    for c in configs:
        module = space.build(c, classes, shape)
        own.append(
            _forward_flops(module, jax.eval_shape(module.init, jax.random.PRNGKey(0), x1), x)
        )
        print(f"  own {space.describe(c):40s} fwd {own[-1] / 1e9:.3f} GFLOP")
    mean = sum(own) / len(own)
    print(
        f"masked graph {masked / 1e9:.3f} GFLOP/example, "
        f"own mean {mean / 1e9:.3f} ({masked / mean:.1f}x)"
    )


def main(argv=None) -> None:
    import jax
    import jax.numpy as jnp
    import optuna

    from ntknas import data
    from search_spaces import get_space

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="mlp-mixer")
    p.add_argument("--candidates", type=int, default=3)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--method", default="structured_derivatives")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--flops-only", action="store_true", help="only the forward FLOPs (lowering, no kernels)"
    )
    args = p.parse_args(argv)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = get_space(args.space)
    shape, classes = space.default_input_shape, space.default_num_classes
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=args.seed))
    configs = [space.suggest(study.ask()) for _ in range(args.candidates)]
    x = jnp.asarray(data.load_batch("gaussian", args.batch, shape, args.seed), jnp.float32)
    key = jax.random.PRNGKey(args.seed)

    print(f"{args.space} {shape} batch {args.batch}, {classes} logits, {args.method}, float32")
    if args.flops_only:
        _print_flops(space, configs, classes, shape, x)
        return
    own_flops, own_total = [], 0.0
    for c in configs:
        t0 = time.perf_counter()
        module = space.build(c, classes, shape)
        variables = module.init(key, x)
        t1 = time.perf_counter()
        run = _kernel(module, variables, x, (), args.method)
        t2 = time.perf_counter()
        k = np.asarray(jax.block_until_ready(run(variables["params"], x)))
        t3 = time.perf_counter()
        own_total += t3 - t0
        own_flops.append(_forward_flops(module, variables, x))
        print(
            f"  own    {space.describe(c):40s} init {t1 - t0:6.2f}s compile {t2 - t1:6.2f}s "
            f"kernel {t3 - t2:6.2f}s  fwd {own_flops[-1] / 1e9:.3f} GFLOP  tr {_trace(k):.4g}"
        )

    graph = space.shared_graph(classes, shape)
    t0 = time.perf_counter()
    variables = graph.init_own(key, x, configs[0])
    t1 = time.perf_counter()
    arch = (jnp.asarray(graph.encode(configs[0]), jnp.float32),)
    run = _kernel(graph.module, variables, x, arch, args.method)
    t2 = time.perf_counter()
    masked_flops = _forward_flops(graph.module, variables, x, *arch)
    print(
        f"  masked graph: first init_own {t1 - t0:.2f}s (compiles), kernel compile {t2 - t1:.2f}s"
    )
    masked_total = t2 - t0
    for c in configs:
        t0 = time.perf_counter()
        variables = graph.init_own(key, x, c)
        arch = (jnp.asarray(graph.encode(c), jnp.float32),)
        t1 = time.perf_counter()
        k = np.asarray(jax.block_until_ready(run(variables["params"], x, *arch)))
        t2 = time.perf_counter()
        masked_total += t2 - t0
        print(
            f"  masked {space.describe(c):40s} init {t1 - t0:6.2f}s kernel {t2 - t1:6.2f}s"
            f"  tr {_trace(k):.4g}"
        )
    mean_own = sum(own_flops) / len(own_flops)
    print(
        f"total: own path {own_total:.1f}s, masked graph {masked_total:.1f}s (incl. its compile)\n"
        f"forward FLOPs/example: masked graph {masked_flops / 1e9:.3f} G, candidates' own mean "
        f"{mean_own / 1e9:.3f} G (overhead {masked_flops / mean_own:.1f}x)"
    )


if __name__ == "__main__":
    main()
