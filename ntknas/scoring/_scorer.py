"""The scorer: build, initialize, draw a batch, take the full O×O NTK, read proxies.

Two paths score a config, and every :class:`Score` says which (``path``):

- ``"own"``: the config's own network is built and its kernel compiled. Two candidates that build
  equal Flax modules at the same batch shape share one compiled kernel and one forward-cost
  analysis.
- ``"shared"``: the space's shared graph (:meth:`search_spaces.SearchSpace.shared_graph`) computes
  every config, the architecture an input array, so one kernel is compiled per space and setting
  (batch, input shape, logits, BN mode, dtype, method) and a new config costs its initialization
  and its kernel. The parameter count and FLOPs are still the config's own network's, and the
  kernel equals the own network's for the same parameters.

Both paths draw the same initial values for a seed, so they give the same scores (to float
rounding) and the path changes only the speed. Where the space has a shared graph whose ``init``
is None (the masked width/depth graphs), both take them from its ``init_own`` (one compiled
initializer per space and input shape, the candidate's own distribution): the shared path whole,
the own path through ``select``. Elsewhere the own path runs its network's ``init`` (for nb201 the
same values as the shared graph's ``init``, by :class:`search_spaces.SharedGraph`'s contract).

Parameters, BatchNorm state and inputs are always arguments, never constants, so a new seed or a
new data draw reruns the compiled code without tracing again. Which path: see :class:`Scorer`.
"""

from __future__ import annotations

import collections
import concurrent.futures
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._cache import enable_compile_cache
from ._options import ScoreOptions, apply_overrides, canonical_json
from ._record import Score

_SHARED_VARIABLES = 4  # initial variables kept per shared graph (one set per seed and shape)

# The path rule: a config goes through its space's shared graph when the graph's forward costs at
# most this many times the config's own forward (XLA's FLOPs per example), else through its own
# network. Each shared kernel computes the largest network, so a config far smaller than it is
# cheaper to compile alone (figures in experiments/README.md). A space whose own networks compile
# far slower than its graph's kernel runs sets its own bound (``SearchSpace.shared_flops_max``).
SHARED_FLOPS_MAX = 2.5


@dataclass(frozen=True, kw_only=True)
class _Forward:
    """The function a kernel is taken of, before anything is compiled."""

    module: Any
    f: Callable  # f(params, (inputs, state[, arch])) -> (N, O)
    vmap_axes: Any
    shared: Any = None  # the space's SharedGraph when the architecture is an input
    # the space's param_block when the kernel is taken per parameter block (Scorer.score's blocks)
    param_block: Callable | None = None


@dataclass(frozen=True, kw_only=True)
class _Compiled:
    """The compiled kernel of one (module, input shape, batch, BN mode, dtype, method)."""

    forward: _Forward
    # kernel(params, state, inputs, *arch) -> (N, N, O, O), per block {block: (N, N, O, O)} where
    # the forward has a param_block; None matrix-free
    kernel: Callable
    method: str
    ntk_flops: float | None
    compile_seconds: float
    mvp: Callable | None = None  # mvp(v, xs, None, params): the compiled Θv, matrix-free only


@dataclass(frozen=True, kw_only=True)
class _Route:
    """How one config is scored: the compiled model it goes through and its place there."""

    path: str  # "own" or "shared"
    key: tuple  # the compiled model's key in Scorer._models
    forward: _Forward
    config: dict
    num_classes: int
    input_shape: tuple[int, int, int]
    arch: Any = None  # the config's encoding (numpy) on the shared path
    graph: Any = None  # the space's SharedGraph holding the config (it may draw the own variables)


class Scorer:
    """Scores configs, keeping compiled models and finished scores for reuse.

    The first Scorer of a process turns on JAX's persistent compilation cache
    (:mod:`ntknas.scoring._cache`; ``NTKNAS_COMPILE_CACHE=0`` keeps it off).

    Args:
      max_models: how many compiled models to keep (least recently used are dropped).
      shared_graphs: True lets the path rule pick each config's path: its space's shared graph
        when the space has one for the scoring setting, the graph holds the config, and the
        graph's forward FLOPs per example are at most ``shared_flops_max`` times the
        config's own (XLA's cost analysis of both forwards, computed once per config and once
        per graph and setting); else its own network. Where the graph's FLOPs are within the
        bound of the smallest of the space's ``size_extremes`` (:meth:`shared_for_every_config`),
        every config it holds takes the graph without its own FLOPs first; they are computed
        for its record while its kernel runs. (A space whose smallest networks are not among its
        ``size_extremes`` would send a config under them through the graph: the same scores,
        more slowly.) False always compiles each config's own
        network. Searches, workers and ``score_many`` from :data:`ntknas.scoring.SHARED_GRAPH_MIN`
        configs on pass True; a single ``score`` compiles its own network (the graph's one
        compilation costs more than one own network's). The rule is deterministic per config
        and setting, and the scores do not depend on it (see the module docstring).
      shared_flops_max: the rule's bound for every space (``math.inf`` sends every config a
        graph holds through it, as benchmarks of the graph do); None: each space's own
        ``shared_flops_max``, else :data:`SHARED_FLOPS_MAX`.
    """

    def __init__(
        self,
        max_models: int = 32,
        shared_graphs: bool = False,
        shared_flops_max: float | None = None,
    ):
        enable_compile_cache()
        self._models: collections.OrderedDict = collections.OrderedDict()
        self._results: dict = {}
        self._flops: dict = {}
        self._graph_flops: dict = {}
        self._shapes: dict = {}
        self._graphs: dict = {}
        self._shared_variables: dict = {}
        self._all_shared: dict = {}
        self._sizes: concurrent.futures.ThreadPoolExecutor | None = None
        self.max_models = max_models
        self.shared_graphs = shared_graphs
        self.shared_flops_max = shared_flops_max

    def score(
        self, space, config: dict, options: ScoreOptions | None = None, blocks: bool = False
    ) -> Score:
        """Every proxy of one config (see :func:`ntknas.scoring.score`).

        Args:
          blocks: the per-block proxies too (``blk_*``, :func:`ntknas.proxies.blocks.
            block_proxies`): the kernel is taken per parameter block of the space's
            ``param_block`` in one program (the blocks sum to the full kernel, from which the
            other proxies come), and formed whatever ``options.matrix_free_above`` says, since
            each block's spectrum needs its kernel. A search or ``score_many`` asks for them when
            its objective names one.

        Raises:
          ValueError: ``blocks`` for a space without parameter blocks.
        """
        import jax

        from search_spaces import SearchSpace, get_space

        from .. import proxies

        options = options or ScoreOptions()
        space = space if isinstance(space, SearchSpace) else get_space(space)
        config = apply_overrides(space, config, options)
        if blocks and space.param_block is None:
            raise ValueError(
                f"space {space.name} has no parameter blocks: the per-block proxies (blk_*) are "
                "for spaces that define param_block (the vit spaces)"
            )
        memo = (space.name, canonical_json(config), options, blocks)
        if memo in self._results:
            return self._results[memo]
        start = time.perf_counter()
        path = "auto" if self.shared_graphs else "own"
        route = self._route(space, config, options, path, space.param_block if blocks else None)
        sizes = None
        if route.path == "shared":
            # The own network's parameter count and FLOPs come from tracing it (shapes only), in
            # a thread while the draw and the kernel run in XLA: its Python tracing then overlaps
            # their computation instead of following it.
            sizes = self._size_thread().submit(self._own_sizes, space, config, options)
        inputs = self._inputs(options, route.input_shape)
        t0 = time.perf_counter()
        # waited for: JAX dispatches asynchronously, and the kernel's seconds must not hold the draw
        variables = jax.block_until_ready(self._initial(route, options, inputs))
        init_seconds = time.perf_counter() - t0
        compiled, cached, kernel, kernel_seconds = self._evaluate(route, variables, inputs, options)
        block_kernels = None
        if isinstance(kernel, dict):  # per block: the full kernel is their sum
            block_kernels, kernel = kernel, sum(kernel.values())
        if sizes is None:
            n_params = _count(variables["params"])
            flops = self.own_flops(space, config, options)
        else:
            n_params, flops = sizes.result()
        if compiled.mvp is None:
            kernel_proxies, spectrum = proxies.kernel_proxies(kernel, n_params), "exact"
        else:  # kernel is the operator; its Lanczos runs are the kernel's seconds
            t0 = time.perf_counter()
            kernel_proxies, spectrum = proxies.operator_proxies(kernel, n_params)
            kernel_seconds += time.perf_counter() - t0
        if block_kernels is not None:
            from ..proxies.blocks import block_proxies

            kernel_proxies = {**kernel_proxies, **block_proxies(block_kernels)}
        score = Score(
            space=space.name,
            config=config,
            description=space.describe(config),
            short=space.short(config),
            kernel_proxies=kernel_proxies,
            spectrum=spectrum,
            params=n_params,
            flops=flops,
            method=compiled.method,
            ntk_flops=compiled.ntk_flops,
            path=route.path,
            seconds=time.perf_counter() - start,
            compile_seconds=0.0 if cached else compiled.compile_seconds,
            init_seconds=init_seconds,
            kernel_seconds=kernel_seconds,
            batch=options.batch,
            data=options.data,
            seed=options.seed,
            bn=options.bn,
            num_classes=route.num_classes,
            input_shape=route.input_shape,
            dtype=options.dtype,
        )
        self._results[memo] = score
        return score

    def _size_thread(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._sizes is None:
            self._sizes = concurrent.futures.ThreadPoolExecutor(1, "ntknas-own-sizes")
        return self._sizes

    def _own_sizes(self, space, config: dict, options: ScoreOptions) -> tuple[int, float | None]:
        """``(parameters, forward FLOPs per example)`` of a config's own network."""
        return self.count_params(space, config, options), self.own_flops(space, config, options)

    def shared_for_every_config(self, space, options: ScoreOptions) -> bool:
        """Whether the path rule sends every config the space's graph holds through it, known
        without tracing each config: the graph's FLOPs are within the bound of the fewest own
        FLOPs among the space's ``size_extremes`` (its smallest networks; cached per setting)."""
        key = (*_graph_setting(space, options), self.flops_bound(space))
        if key not in self._all_shared:
            own, graph_flops = [], None
            for extreme in space.size_extremes():
                extreme = space.validate(extreme)
                shared = self.shared_flops(space, extreme, options)
                if shared is not None:  # an extreme the graph holds
                    graph_flops = shared
                    own.append(self.own_flops(space, extreme, options))
            self._all_shared[key] = (
                graph_flops is not None
                and None not in own
                and graph_flops <= self.flops_bound(space) * min(own)
            )
        return self._all_shared[key]

    def flops_bound(self, space) -> float:
        """The path rule's bound for ``space``: the scorer's, else the space's, else
        :data:`SHARED_FLOPS_MAX`."""
        if self.shared_flops_max is not None:
            return self.shared_flops_max
        own = getattr(space, "shared_flops_max", None)
        return SHARED_FLOPS_MAX if own is None else own

    def count_params(self, space, config: dict, options: ScoreOptions | None = None) -> int:
        """Parameters of a config, from shapes alone (nothing is computed or compiled)."""
        return _count(self._own_shapes(space, config, options or ScoreOptions())["params"])

    def own_flops(self, space, config: dict, options: ScoreOptions) -> float | None:
        """Forward FLOPs per example of the config's own network (cached; shape-only tracing)."""
        num_classes, input_shape = options.resolve_io(space)
        key = (space.name, canonical_json(config), num_classes, input_shape, options.bn)
        key += (options.float64,)
        if key not in self._flops:
            module = space.build(config, num_classes=num_classes, input_shape=input_shape)
            variables = self._own_shapes(space, config, options)
            self._flops[key] = _flops_per_example(
                _forward(module, options), variables, input_shape, options
            )
        return self._flops[key]

    def shared_flops(self, space, config: dict, options: ScoreOptions) -> float | None:
        """Forward FLOPs per example of the shared graph that holds ``config`` (the same for
        every config it holds; cached per graph and setting), or None when no graph holds it."""
        import jax

        _, input_shape = options.resolve_io(space)
        graph, arch = self._held(space, config, options)
        if graph is None:
            return None
        key = _graph_setting(space, options)
        if key not in self._graph_flops:
            x = jax.ShapeDtypeStruct((1, *input_shape), np.float32)
            variables = jax.eval_shape(
                lambda k, x: graph.init_own(k, x, config), jax.random.PRNGKey(0), x
            )
            forward = _forward(graph.module, options, graph)
            self._graph_flops[key] = _flops_per_example(
                forward, variables, input_shape, options, arch
            )
        return self._graph_flops[key]

    def _own_shapes(self, space, config: dict, options: ScoreOptions) -> dict:
        """The shapes of a config's own initial variables (cached; shape-only tracing)."""
        import jax

        num_classes, input_shape = options.resolve_io(space)
        key = (space.name, canonical_json(config), num_classes, input_shape)
        if key not in self._shapes:
            module = space.build(config, num_classes=num_classes, input_shape=input_shape)
            x = jax.ShapeDtypeStruct((1, *input_shape), np.float32)
            self._shapes[key] = jax.eval_shape(module.init, jax.random.PRNGKey(0), x)
        return self._shapes[key]

    def _graph(self, space, num_classes: int, input_shape):
        """The space's shared graph for these logits and input shape (built once), or None."""
        key = (type(space), space.name, num_classes, tuple(input_shape))
        if key not in self._graphs:
            try:
                self._graphs[key] = space.shared_graph(num_classes, input_shape)
            except ValueError:  # no graph for this input (its own networks say why, if at all)
                self._graphs[key] = None
        return self._graphs[key]

    def _held(self, space, config: dict, options: ScoreOptions):
        """``(graph, arch)``: the space's shared graph and the config's encoding, or
        ``(None, None)`` when the space has no graph for this setting or it does not hold
        the config."""
        graph = self._graph(space, *options.resolve_io(space))
        if graph is None:
            return None, None
        try:
            return graph, graph.encode(config)
        except ValueError:  # a config the graph does not hold (e.g. resnet's other stem)
            return None, None

    def _route(
        self, space, config: dict, options: ScoreOptions, path: str, param_block=None
    ) -> _Route:
        """How a validated config is scored.

        Args:
          path: ``"own"``; ``"shared"`` (when a graph holds the config, else own); or ``"auto"``,
            the path rule (see :class:`Scorer`).
          param_block: the space's ``param_block`` when the kernel is taken per block.
        """
        num_classes, input_shape = options.resolve_io(space)
        shapes = (tuple(input_shape), options.batch, options.bn, options.dtype, options.method)
        shapes += ("blocks",) if param_block is not None else ()
        graph, arch = self._held(space, config, options)
        if path == "auto" and graph is not None:
            fits = self.shared_for_every_config(space, options)
            if not fits:
                own = self.own_flops(space, config, options)
                shared = self.shared_flops(space, config, options)
                # FLOPs XLA cannot count: the own network, which is right whatever its speed
                bound = self.flops_bound(space)
                fits = own is not None and shared is not None and shared <= bound * own
            path = "shared" if fits else "own"
        io = dict(config=config, num_classes=num_classes, input_shape=input_shape, graph=graph)
        if path == "shared" and graph is not None:
            key = ("shared graph", type(space), space.name, num_classes, shapes)
            forward = _forward(graph.module, options, graph, param_block)
            return _Route(path="shared", key=key, forward=forward, arch=arch, **io)
        module = space.build(config, num_classes=num_classes, input_shape=input_shape)
        try:
            key = (type(module), module, shapes)
            hash(key)
        except TypeError:  # an unhashable module: fall back to the config itself
            key = (space.name, canonical_json(config), num_classes, shapes)
        forward = _forward(module, options, param_block=param_block)
        return _Route(path="own", key=key, forward=forward, **io)

    @staticmethod
    def _inputs(options: ScoreOptions, input_shape):
        import jax.numpy as jnp

        from .. import data

        batch = data.load_batch(options.data, options.batch, input_shape, options.seed)
        return jnp.asarray(batch, _dtype(options))

    def _initial(self, route: _Route, options: ScoreOptions, inputs) -> dict:
        """The config's initial variables on its path, in the scoring dtype.

        Own path: :func:`own_variables`. Shared path: the graph's ``init_own`` where its
        ``init`` is None (compiled once per space and input shape), else its ``init`` (every
        config's values at once, nb201), drawn once per seed.
        """
        import jax

        key = jax.random.PRNGKey(options.seed)
        x = inputs[:1]  # initial values do not depend on the batch; one compile per input shape
        graph = route.graph
        if route.path == "own":
            variables = own_variables(route.forward.module, graph, route.config, key, x)
            return _as_dtype(variables, _dtype(options))
        if graph.init is None:
            return _as_dtype(graph.init_own(key, x, route.config), _dtype(options))
        memo = (route.key, options.seed, x.shape)
        if memo not in self._shared_variables:
            while len(self._shared_variables) >= _SHARED_VARIABLES:
                self._shared_variables.pop(next(iter(self._shared_variables)))
            variables = _as_dtype(graph.init(key, x), _dtype(options))
            self._shared_variables[memo] = variables
        return self._shared_variables[memo]

    def _evaluate(self, route: _Route, variables: dict, inputs, options: ScoreOptions):
        """``(compiled, cached, kernel, kernel seconds)``: compiles on a miss. ``kernel`` is the
        (N, N, O, O) numpy kernel, or where ``options`` say matrix-free a
        :class:`ntknas.proxies.KernelOperator` (its matvecs run later)."""
        import jax
        import jax.numpy as jnp

        from .. import proxies

        params = variables["params"]
        state = {k: v for k, v in variables.items() if k != "params"}
        arch = () if route.arch is None else (jnp.asarray(route.arch, _dtype(options)),)
        # per-block spectra need each block's kernel formed
        matrix_free = options.matrix_free(route.num_classes) and route.forward.param_block is None
        key = (route.key, "matrix-free") if matrix_free else route.key
        compiled = self._models.get(key)
        cached = compiled is not None
        if cached:
            self._models.move_to_end(key)
        else:
            build = _compile_operator if matrix_free else _compile
            compiled = build(route.forward, options, params, state, inputs, arch)
            self._models[key] = compiled
            while len(self._models) > self.max_models:
                self._models.popitem(last=False)
        t0 = time.perf_counter()
        if matrix_free:
            xs = (inputs, state, *arch)
            kernel = proxies.kernel_operator(route.forward.f, xs, params, mvp=compiled.mvp)
        else:
            out = jax.block_until_ready(compiled.kernel(params, state, inputs, *arch))
            if isinstance(out, dict):  # per parameter block
                kernel = {k: np.asarray(v) for k, v in out.items()}
            else:
                kernel = np.asarray(out)
        return compiled, cached, kernel, time.perf_counter() - t0


def own_variables(module, graph, config: dict, key, x) -> dict:
    """A config's own initial variables, the values every path scores it with.

    Where its space's shared graph holds the config and has no ``init`` (the masked graphs):
    ``select(init_own(key, x, config), config)``, the same values the shared path uses (one
    compiled initializer per space and input shape). Else its network's ``init``, run eagerly
    (for nb201 the same values as the shared graph's ``init``).

    Args:
      module: the config's own network (``space.build(config, ...)``).
      graph: the space's :class:`search_spaces.SharedGraph` for this setting, or None.
      config: the validated config.
      key: the PRNG key of the seed.
      x: inputs ``(N, H, W, C)``; only their shape and dtype matter.
    """
    import jax

    x = x[:1]  # the values do not depend on the batch: one compile per input shape
    if graph is not None and graph.init is None:
        try:
            graph.encode(config)
        except ValueError:  # a config the graph does not hold (e.g. resnet's other stem)
            graph = None
    if graph is None or graph.init is not None:
        return module.init(key, x)
    variables = graph.init_own(key, x, config)
    # sliced in numpy: no eager XLA op (and compile) per own shape
    return graph.select(jax.tree.map(np.asarray, variables), config)


def _graph_setting(space, options: ScoreOptions) -> tuple:
    """The key of what a shared graph's FLOPs depend on: space, logits, input shape, BN mode,
    precision."""
    num_classes, input_shape = options.resolve_io(space)
    return (type(space), space.name, num_classes, input_shape, options.bn, options.float64)


def _dtype(options: ScoreOptions):
    import jax.numpy as jnp

    return jnp.float64 if options.float64 else jnp.float32


def _as_dtype(variables: dict, dtype) -> dict:
    """Floating leaves of ``variables`` in ``dtype`` (integer state is kept)."""
    import jax
    import jax.numpy as jnp

    return jax.tree.map(
        lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, variables
    )


def _count(params) -> int:
    import jax

    return sum(math.prod(p.shape) for p in jax.tree.leaves(params))


def _forward(module, options: ScoreOptions, shared=None, param_block=None) -> _Forward:
    """``f(params, (inputs, state[, arch]))``: ``arch`` is there for a shared graph only;
    ``param_block``: the kernel is taken per parameter block."""
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
    return _Forward(module=module, f=f, vmap_axes=vmap_axes, shared=shared, param_block=param_block)


def _compile(forward: _Forward, options: ScoreOptions, params, state, inputs, arch) -> _Compiled:
    import jax

    from .. import ntk

    t0 = time.perf_counter()
    vmap_axes = forward.vmap_axes
    if vmap_axes is None and not jax.tree.leaves(state.get("batch_stats", {})):
        # bn="train" on a network without BatchNorm: no batch statistics couple the examples,
        # so the kernel is taken per example (the same kernel, far cheaper to structure)
        vmap_axes = ((0, None) if not arch else (0, None, None), 0)
    blocks = forward.param_block
    kernel_fn = ntk.ntk_fn(
        forward.f, method=options.method, vmap_axes=vmap_axes, param_blocks=blocks
    )
    # Compiled from auto's own lowering of the chosen method: nothing is traced twice.
    exe = kernel_fn.compile((inputs, state, *arch), None, params)

    def kernel(params, state, inputs, *arch):
        return exe((inputs, state, *arch), None, params)

    compile_seconds = time.perf_counter() - t0
    xs = (inputs, state, *arch)
    if options.method == "auto":  # explain() is cached: this reads the choice made while compiling
        expl = ntk.explain(forward.f, xs, None, params, vmap_axes=vmap_axes, param_blocks=blocks)
        method, ntk_flops = expl.method, expl.estimates[expl.method].flops
    else:
        method, ntk_flops = options.method, kernel_fn.flops(xs, None, params)
    return _Compiled(
        forward=forward,
        kernel=kernel,
        method=method,
        ntk_flops=ntk_flops,
        compile_seconds=compile_seconds,
    )


def _compile_operator(forward: _Forward, options, params, state, inputs, arch) -> _Compiled:
    """The compiled NTK-vector product ``v ↦ Θv`` of a forward (parameters and inputs are its
    arguments, so it serves every candidate of the same shapes). ``ntk_flops``: one product's."""
    import jax
    import jax.numpy as jnp

    from .. import ntk

    t0 = time.perf_counter()
    xs = (inputs, state, *arch)
    out = jax.eval_shape(forward.f, params, xs)
    v = jnp.zeros(out.shape, out.dtype)
    exe = ntk.ntk_vp_fn(forward.f).lower(v, xs, None, params).compile()
    return _Compiled(
        forward=forward,
        kernel=None,
        method="ntk_vector_products (matrix-free)",
        ntk_flops=_flops(exe.cost_analysis()),
        compile_seconds=time.perf_counter() - t0,
        mvp=exe,
    )


def _flops_per_example(forward: _Forward, variables, input_shape, options: ScoreOptions, arch=None):
    """XLA's FLOPs of one forward pass of one example, from shapes alone (lowered, not compiled).

    Args:
      variables: the variables' shapes (``jax.eval_shape`` of an init).
      input_shape: (H, W, C) of the example.
      arch: the encoding of a config, for a shared graph's forward.
    """
    import jax

    dtype = np.dtype(options.dtype)
    variables = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, dtype), variables)
    params = variables["params"]
    state = {k: v for k, v in variables.items() if k != "params"}
    x = jax.ShapeDtypeStruct((1, *input_shape), dtype)
    extra = () if arch is None else (jax.ShapeDtypeStruct(np.shape(arch), dtype),)
    lowered = jax.jit(lambda p, s, x, *a: forward.f(p, (x, s, *a))).lower(params, state, x, *extra)
    return _flops(lowered.cost_analysis())


def _flops(cost) -> float | None:
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    if not cost or "flops" not in cost:
        return None
    return float(cost["flops"])
