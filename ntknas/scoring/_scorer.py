"""The scorer: build, initialize, draw a batch, take the full O×O NTK, read proxies.

Compiled work is cached per model: two candidates that build equal Flax modules (same shapes and
hyperparameters) at the same batch shape share one compiled initializer, one compiled kernel and one
forward-cost analysis; parameters, BatchNorm state and inputs are arguments, never constants, so a
new seed or a new data draw reruns the compiled code without tracing again. A space with a shared
graph (:meth:`search_spaces.SearchSpace.shared_graph`, e.g. nb201) can go further
(``Scorer(shared_graphs=True)``): the architecture itself is an input array, so one compiled
kernel scores every config; the parameter count and FLOPs are still the config's own network's.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._options import ScoreOptions, apply_overrides, canonical_json

_SHARED_VARIABLES = 4  # initial variables kept per shared graph (one set per seed and shape)


@dataclass(frozen=True, kw_only=True)
class Score:
    """Every proxy of one architecture and how it was obtained.

    Attributes:
      space, config, description: the architecture.
      kernel_proxies: the proxies read from the kernel (:func:`ntknas.proxies.kernel_proxies`).
      params: trainable parameters of the config's own network.
      flops: its forward FLOPs per example (None where XLA reports none).
      method: the NTK method used (what ``"auto"`` chose).
      ntk_flops: the kernel's estimated or reported FLOPs.
      seconds: all of the scoring; ``compile_seconds`` (0 when a compiled kernel was reused),
        ``init_seconds`` and ``kernel_seconds`` (running the compiled kernel) are parts of it.
      batch, data, seed, bn, num_classes, input_shape, dtype: the options it was scored with.
    """

    space: str
    config: dict[str, Any]
    description: str
    kernel_proxies: Mapping[str, float]
    params: int
    flops: float | None
    method: str
    ntk_flops: float | None
    seconds: float
    compile_seconds: float
    init_seconds: float
    kernel_seconds: float
    batch: int
    data: str
    seed: int
    bn: str
    num_classes: int
    input_shape: tuple[int, int, int]
    dtype: str

    def __getitem__(self, proxy: str) -> float:
        """The value of a proxy of :data:`ntknas.proxies.PROXIES` by name."""
        if proxy == "params":
            return self.params
        if proxy == "flops":
            return self.flops
        return self.kernel_proxies[proxy]

    def as_dict(self) -> dict[str, Any]:
        """The flat record stored with a trial and written as a row (input_shape as ``HxWxC``)."""
        return {
            "space": self.space,
            "config": self.config,
            "description": self.description,
            **self.kernel_proxies,
            "init_seconds": self.init_seconds,
            "kernel_seconds": self.kernel_seconds,
            "params": self.params,
            "flops": self.flops,
            "method": self.method,
            "ntk_flops": self.ntk_flops,
            "seconds": self.seconds,
            "compile_seconds": self.compile_seconds,
            "batch": self.batch,
            "data": self.data,
            "seed": self.seed,
            "bn": self.bn,
            "num_classes": self.num_classes,
            "input_shape": "x".join(map(str, self.input_shape)),
            "dtype": self.dtype,
        }


@dataclass(frozen=True, kw_only=True)
class _Forward:
    """The function a kernel is taken of, before anything is compiled."""

    module: Any
    f: Callable  # f(params, (inputs, state[, arch])) -> (N, O)
    vmap_axes: Any
    init: Callable  # init(key, inputs) -> variables
    shared: Any = None  # the space's SharedGraph when the architecture is an input


@dataclass(frozen=True, kw_only=True)
class _Compiled:
    """The compiled kernel of one (module, input shape, batch, BN mode, dtype, method)."""

    forward: _Forward
    kernel: Callable  # kernel(params, state, inputs, *arch) -> (N, N, O, O)
    method: str
    ntk_flops: float | None
    forward_flops: float | None  # None for a shared graph: its FLOPs are not the config's
    compile_seconds: float


class Scorer:
    """Scores configs, keeping compiled models and finished scores for reuse.

    Args:
      max_models: how many compiled models to keep (least recently used are dropped).
      shared_graphs: score through a space's shared graph when it has one: the same scores and
        one compilation for the whole space, but that compilation is slow and each kernel
        computes every op, so it pays off from a few dozen configs on (``ntknas compare``,
        studies; figures in experiments/README.md). False builds and compiles each config's own
        network.
    """

    def __init__(self, max_models: int = 32, shared_graphs: bool = False):
        self._models: collections.OrderedDict = collections.OrderedDict()
        self._results: dict = {}
        self._flops: dict = {}
        self._shared_variables: dict = {}
        self.max_models = max_models
        self.shared_graphs = shared_graphs

    def score(self, space, config: dict, options: ScoreOptions | None = None) -> Score:
        """Every proxy of one config (see :func:`ntknas.scoring.score`)."""
        from search_spaces import SearchSpace, get_space

        options = options or ScoreOptions()
        space = space if isinstance(space, SearchSpace) else get_space(space)
        config = apply_overrides(space, config, options)
        memo = (space.name, canonical_json(config), options)
        if memo in self._results:
            return self._results[memo]
        start = time.perf_counter()
        num_classes, input_shape = options.resolve_io(space)
        key, forward = self._forward(space, config, num_classes, input_shape, options)
        result = self._run(key, forward, options, input_shape, config)
        compiled, cached, kernel_proxies, n_params, init_seconds, kernel_seconds = result
        if compiled.forward.shared is not None:
            flops = self.own_flops(space, config, options)
        else:
            flops = compiled.forward_flops
        score = Score(
            space=space.name,
            config=config,
            description=space.describe(config),
            kernel_proxies=kernel_proxies,
            params=n_params,
            flops=flops,
            method=compiled.method,
            ntk_flops=compiled.ntk_flops,
            seconds=time.perf_counter() - start,
            compile_seconds=0.0 if cached else compiled.compile_seconds,
            init_seconds=init_seconds,
            kernel_seconds=kernel_seconds,
            batch=options.batch,
            data=options.data,
            seed=options.seed,
            bn=options.bn,
            num_classes=num_classes,
            input_shape=input_shape,
            dtype=options.dtype,
        )
        self._results[memo] = score
        return score

    def count_params(self, space, config: dict, options: ScoreOptions | None = None) -> int:
        """Parameters of a config, from shapes alone (nothing is computed or compiled)."""
        import jax

        options = options or ScoreOptions()
        num_classes, input_shape = options.resolve_io(space)
        module = space.build(config, num_classes=num_classes, input_shape=input_shape)
        x = jax.ShapeDtypeStruct((1, *input_shape), np.float32)
        shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), x)
        return sum(math.prod(a.shape) for a in jax.tree.leaves(shapes["params"]))

    def own_flops(self, space, config: dict, options: ScoreOptions) -> float | None:
        """Forward FLOPs per example of the config's own network (cached; shape-only tracing)."""
        import jax

        num_classes, input_shape = options.resolve_io(space)
        key = (space.name, canonical_json(config), num_classes, input_shape, options.bn)
        key += (options.float64,)
        if key not in self._flops:
            module = space.build(config, num_classes=num_classes, input_shape=input_shape)
            f = _forward(module, options).f
            x = jax.ShapeDtypeStruct((1, *input_shape), np.dtype(options.dtype))
            variables = jax.eval_shape(module.init, jax.random.PRNGKey(0), x)
            variables = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, x.dtype), variables)
            params = variables["params"]
            state = {k: v for k, v in variables.items() if k != "params"}
            self._flops[key] = _forward_flops(f, params, state, x)
        return self._flops[key]

    def _forward(self, space, config, num_classes, input_shape, options):
        """The cache key of a config's compiled model and its uncompiled forward."""
        shapes = (tuple(input_shape), options.batch, options.bn, options.dtype, options.method)
        shared = space.shared_graph(num_classes, input_shape) if self.shared_graphs else None
        if shared is not None:
            key = ("shared graph", space.name, num_classes, shapes)
            return key, _forward(shared.module, options, shared)
        module = space.build(config, num_classes=num_classes, input_shape=input_shape)
        try:
            key = (type(module), module, shapes)
            hash(key)
        except TypeError:  # an unhashable module: fall back to the config itself
            key = (space.name, canonical_json(config), num_classes, shapes)
        return key, _forward(module, options)

    def _run(self, key, forward: _Forward, options: ScoreOptions, input_shape, config):
        """Initializes, compiles on a cache miss, runs the kernel and reads its proxies."""
        import jax
        import jax.numpy as jnp

        from .. import data, proxies

        dtype = jnp.float64 if options.float64 else jnp.float32
        inputs = jnp.asarray(
            data.load_batch(options.data, options.batch, input_shape, options.seed), dtype
        )
        compiled = self._models.get(key)
        if compiled is not None:
            self._models.move_to_end(key)
            forward = compiled.forward
        t0 = time.perf_counter()
        variables = self._init(key, forward, options.seed, inputs, dtype)
        params = variables["params"]
        state = {k: v for k, v in variables.items() if k != "params"}
        arch = ()
        own_params = params
        if forward.shared is not None:  # the config's own parameters are a slice of the shared
            arch = (jnp.asarray(forward.shared.encode(config), dtype),)
            own_params = forward.shared.select(variables, config)["params"]
        n_params = sum(math.prod(p.shape) for p in jax.tree.leaves(own_params))
        init_seconds = time.perf_counter() - t0
        cached = compiled is not None
        if not cached:
            compiled = _compile(forward, options, params, state, inputs, arch)
            self._models[key] = compiled
            while len(self._models) > self.max_models:
                self._models.popitem(last=False)
        t0 = time.perf_counter()
        kernel = np.asarray(jax.block_until_ready(compiled.kernel(params, state, inputs, *arch)))
        kernel_seconds = time.perf_counter() - t0
        kernel_proxies = proxies.kernel_proxies(kernel, n_params)
        return compiled, cached, kernel_proxies, n_params, init_seconds, kernel_seconds

    def _init(self, key, forward: _Forward, seed: int, inputs, dtype) -> dict:
        """Initial variables in ``dtype``; a shared graph's are kept per seed (one fits all)."""
        import jax
        import jax.numpy as jnp

        memo = (key, seed, inputs.shape, jnp.dtype(dtype).name)
        if memo in self._shared_variables:
            return self._shared_variables[memo]
        variables = forward.init(jax.random.PRNGKey(seed), inputs)
        variables = jax.tree.map(
            lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, variables
        )
        if forward.shared is not None:
            while len(self._shared_variables) >= _SHARED_VARIABLES:
                self._shared_variables.pop(next(iter(self._shared_variables)))
            self._shared_variables[memo] = variables
        return variables


def _forward(module, options: ScoreOptions, shared=None) -> _Forward:
    """``f(params, (inputs, state[, arch]))``: ``arch`` is there for a shared graph only."""
    if options.bn == "eval":

        def f(params, xs):
            inputs, state, *arch = xs
            return module.apply({"params": params, **state}, inputs, *arch)

        # inputs batched; BatchNorm state (and the architecture) shared by all examples
        vmap_axes = ((0, None) if shared is None else (0, None, None), 0)
    else:

        def f(params, xs):
            inputs, state, *arch = xs
            out, _ = module.apply(
                {"params": params, **state}, inputs, *arch, train=True, mutable=["batch_stats"]
            )
            return out

        vmap_axes = None  # batch statistics couple the examples
    # Eager init, on purpose: a jitted init compiles per architecture, while eager ops compile
    # per shape, and candidates of one space share a handful of layer shapes.
    init = module.init if shared is None else shared.init
    return _Forward(module=module, f=f, vmap_axes=vmap_axes, init=init, shared=shared)


def _compile(forward: _Forward, options: ScoreOptions, params, state, inputs, arch) -> _Compiled:
    import jax

    from .. import ntk

    t0 = time.perf_counter()
    vmap_axes = forward.vmap_axes
    if vmap_axes is None and not jax.tree.leaves(state.get("batch_stats", {})):
        # bn="train" on a network without BatchNorm: no batch statistics couple the examples,
        # so the kernel is taken per example (the same kernel, far cheaper to structure)
        vmap_axes = ((0, None) if not arch else (0, None, None), 0)
    kernel_fn = ntk.ntk_fn(forward.f, method=options.method, vmap_axes=vmap_axes)
    # Compiled from auto's own lowering of the chosen method: nothing is traced twice.
    exe = kernel_fn.compile((inputs, state, *arch), None, params)

    def kernel(params, state, inputs, *arch):
        return exe((inputs, state, *arch), None, params)

    compile_seconds = time.perf_counter() - t0
    if options.method == "auto":  # explain() is cached: this reads the choice made while compiling
        xs = (inputs, state, *arch)
        expl = ntk.explain(forward.f, xs, None, params, vmap_axes=vmap_axes)
        method, ntk_flops = expl.method, expl.estimates[expl.method].flops
    else:
        method, ntk_flops = options.method, _flops(exe.cost_analysis())
    forward_flops = None
    if forward.shared is None:  # a shared graph's FLOPs are not the config's (Scorer.own_flops)
        one = jax.tree.map(lambda a: a[:1], inputs)
        forward_flops = _forward_flops(forward.f, params, state, one)
    return _Compiled(
        forward=forward,
        kernel=kernel,
        method=method,
        ntk_flops=ntk_flops,
        forward_flops=forward_flops,
        compile_seconds=compile_seconds,
    )


def _forward_flops(f, params, state, x) -> float | None:
    """XLA's FLOPs of one forward pass of ``x`` (arrays or shapes alone)."""
    import jax

    return _flops(jax.jit(lambda p, s, x: f(p, (x, s))).lower(params, state, x).cost_analysis())


def _flops(cost) -> float | None:
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    if not cost or "flops" not in cost:
        return None
    return float(cost["flops"])
