"""Scoring one architecture: build, initialize, draw a batch, take the full O×O NTK, read proxies.

Compiled work is cached per model: two candidates that build equal Flax modules (same shapes and
hyperparameters) at the same batch shape share one compiled initializer, one compiled kernel and one
forward-cost analysis; parameters, BatchNorm state and inputs are arguments, never constants, so a
new seed or a new data draw reruns the compiled code without tracing again. A space with a shared
graph (:meth:`search_spaces.SearchSpace.shared_graph`, e.g. nb201) can go further
(``Scorer(shared_graphs=True)``): the architecture itself is an input array, so one compiled
kernel scores every config; the parameter count and FLOPs are still the config's own network's.

Example:
  >>> import ntknas
  >>> ntknas.score("nb201", config, batch=8, seed=0)["ntk_cond"]
"""

from __future__ import annotations

import collections
import json
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

BN_MODES = ("eval", "train")
DEFAULT_BATCH = 4


@dataclass(frozen=True, kw_only=True)
class ScoreOptions:
    """How a candidate is scored. Every field is recorded with its scores.

    Attributes:
      batch: examples N in the batch; the kernel matrix is (N·O)×(N·O).
      seed: seeds both the parameter initialization and the data draw.
      data: ``"gaussian"``, ``"digits"`` or ``"mnist"`` (see :mod:`ntknas.data`).
      num_classes: logits O; None means the space's default.
      input_shape: (H, W, C) of one example; None means the space's default.
      bn: ``"eval"`` (BatchNorm on its initial statistics: examples independent) or ``"train"``
        (batch statistics: the kernel is taken over the whole batch at once).
      float64: compute the kernel in float64 (needs ``jax_enable_x64``); float32 otherwise.
      method: the NTK method (see :class:`ntknas.ntk.NtkMethod`); ``"auto"`` picks the cheapest
        for each architecture.
      overrides: ``(field, value)`` pairs set in every config before it is validated, e.g.
        ``(("patch_size", 16),)`` for the ViT spaces (the CLI's ``--patch``).
    """

    batch: int = DEFAULT_BATCH
    seed: int = 0
    data: str = "gaussian"
    num_classes: int | None = None
    input_shape: tuple[int, ...] | None = None
    bn: str = "eval"
    float64: bool = False
    method: str = "auto"
    overrides: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self):
        from . import data as data_mod
        from . import ntk

        if not isinstance(self.batch, int) or self.batch < 1:
            raise ValueError(f"batch must be a positive int, got {self.batch!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")
        if self.data not in data_mod.DATASETS:
            raise ValueError(
                f"unknown data {self.data!r}; choose one of {', '.join(data_mod.DATASETS)}"
            )
        if self.num_classes is not None and (
            not isinstance(self.num_classes, int) or self.num_classes < 1
        ):
            raise ValueError(f"num_classes must be a positive int, got {self.num_classes!r}")
        if self.input_shape is not None:
            shape = tuple(self.input_shape)
            if len(shape) != 3 or not all(isinstance(s, int) and s >= 1 for s in shape):
                raise ValueError(
                    f"input_shape must be (H, W, C) positive ints, got {self.input_shape!r}"
                )
            object.__setattr__(self, "input_shape", shape)
        if self.bn not in BN_MODES:
            raise ValueError(f"unknown bn mode {self.bn!r}; choose one of {', '.join(BN_MODES)}")
        try:
            ntk.NtkMethod(self.method)
        except ValueError:
            allowed = ", ".join(m.value for m in ntk.NtkMethod)
            raise ValueError(
                f"unknown NTK method {self.method!r}; choose one of {allowed}"
            ) from None
        overrides = tuple(dict(self.overrides).items())  # also accepts a dict
        for k, v in overrides:
            if not isinstance(k, str):
                raise ValueError(f"override fields must be strings, got {k!r}")
            hash(v)
        object.__setattr__(self, "overrides", overrides)
        if self.float64:
            import jax

            if not jax.config.jax_enable_x64:
                raise ValueError("float64=True needs jax_enable_x64 (the CLI's --float64 sets it)")


def apply_overrides(space, config: dict, options: ScoreOptions) -> dict:
    """``config`` with ``options.overrides`` set, validated by ``space`` (ValueError if outside)."""
    return space.validate({**config, **dict(options.overrides)})


def canonical_json(config: dict) -> str:
    """The config as compact JSON with sorted keys: equal configs give equal strings."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"), default=_json_default)


def _json_default(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, tuple):
        return list(v)
    raise TypeError(f"config value {v!r} of type {type(v).__name__} is not JSON serializable")


@dataclass
class _Model:
    """Compiled pieces of one (module, input shape, batch, BN mode, dtype, method)."""

    module: Any
    f: Any  # f(params, (inputs, state)) -> (N, O)
    vmap_axes: Any
    init: Any  # init(key, inputs) -> variables
    kernel: Any = None  # compiled kernel(params, state, inputs, *arch) -> (N, N, O, O)
    shared: Any = None  # the space's SharedGraph when the architecture is an input
    compile_seconds: float = 0.0
    forward_flops: float | None = None
    method: str | None = None
    ntk_flops: float | None = None
    extra: dict = field(default_factory=dict)


class Scorer:
    """Scores configs, keeping compiled models and finished scores for reuse.

    Args:
      max_models: how many compiled models to keep (least recently used are dropped).
      shared_graphs: score through a space's shared graph when it has one: the same scores and
        one compilation for the whole space, but that compilation is slow (nb201 with structured
        derivatives: minutes, against ~20 s per standalone cell) and each kernel computes every
        op, so it pays off from a few dozen configs on (``ntknas compare``, studies). False
        builds and compiles each config's own network.
    """

    def __init__(self, max_models: int = 32, shared_graphs: bool = False):
        self._models: collections.OrderedDict = collections.OrderedDict()
        self._results: dict = {}
        self._flops: dict = {}
        self.max_models = max_models
        self.shared_graphs = shared_graphs

    def score(self, space, config: dict, options: ScoreOptions | None = None) -> dict[str, Any]:
        """Every proxy of one config (see :func:`score`)."""
        from search_spaces import SearchSpace, get_space

        options = options or ScoreOptions()
        space = space if isinstance(space, SearchSpace) else get_space(space)
        config = apply_overrides(space, config, options)
        memo = (space.name, canonical_json(config), options)
        if memo in self._results:
            return dict(self._results[memo])
        start = time.perf_counter()
        num_classes = options.num_classes or space.default_num_classes
        input_shape = options.input_shape or tuple(space.default_input_shape)
        model, cached = self._model(space, config, num_classes, input_shape, options)
        scores = _run(model, options, input_shape, config)
        if model.shared is not None:
            scores["flops"] = self._own_flops(space, config, num_classes, input_shape, options)
        result = {
            "space": space.name,
            "config": config,
            "description": space.describe(config),
            **scores,
            "method": model.method,
            "ntk_flops": model.ntk_flops,
            "seconds": time.perf_counter() - start,
            "compile_seconds": 0.0 if cached else model.compile_seconds,
            "batch": options.batch,
            "data": options.data,
            "seed": options.seed,
            "bn": options.bn,
            "num_classes": num_classes,
            "input_shape": "x".join(map(str, input_shape)),
            "dtype": "float64" if options.float64 else "float32",
        }
        self._results[memo] = result
        return dict(result)

    def count_params(self, space, config: dict, options: ScoreOptions | None = None) -> int:
        """Parameters of a config, from shapes alone (nothing is computed or compiled)."""
        import jax

        options = options or ScoreOptions()
        num_classes = options.num_classes or space.default_num_classes
        input_shape = options.input_shape or tuple(space.default_input_shape)
        module = space.build(config, num_classes=num_classes, input_shape=input_shape)
        x = jax.ShapeDtypeStruct((1, *input_shape), np.float32)
        shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), x)
        return sum(math.prod(a.shape) for a in jax.tree.leaves(shapes["params"]))

    def _own_flops(self, space, config, num_classes, input_shape, options) -> float | None:
        """Forward FLOPs per example of the config's own network (cached; shape-only tracing)."""
        import jax

        key = (
            space.name,
            canonical_json(config),
            num_classes,
            tuple(input_shape),
            options.bn,
            options.float64,
        )
        if key not in self._flops:
            module = space.build(config, num_classes=num_classes, input_shape=input_shape)
            f = _make_model(module, options).f
            x = jax.ShapeDtypeStruct(
                (1, *input_shape), np.float64 if options.float64 else np.float32
            )
            variables = jax.eval_shape(module.init, jax.random.PRNGKey(0), x)
            variables = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, x.dtype), variables)
            params = variables["params"]
            state = {k: v for k, v in variables.items() if k != "params"}
            cost = jax.jit(lambda p, s, x: f(p, (x, s))).lower(params, state, x).cost_analysis()
            self._flops[key] = _flops(cost)
        return self._flops[key]

    def _model(self, space, config, num_classes, input_shape, options):
        dtype = "float64" if options.float64 else "float32"
        shapes = (tuple(input_shape), options.batch, options.bn, dtype, options.method)
        shared = space.shared_graph(num_classes, input_shape) if self.shared_graphs else None
        if shared is not None:
            module = shared.module
            key = ("shared graph", space.name, num_classes, shapes)
        else:
            module = space.build(config, num_classes=num_classes, input_shape=input_shape)
            try:
                key = (type(module), module, shapes)
                hash(key)
            except TypeError:  # an unhashable module: fall back to the config itself
                key = (space.name, canonical_json(config), num_classes, shapes)
        if key in self._models:
            self._models.move_to_end(key)
            return self._models[key], True
        model = _make_model(module, options, shared)
        self._models[key] = model
        while len(self._models) > self.max_models:
            self._models.popitem(last=False)
        return model, False


def _make_model(module, options: ScoreOptions, shared=None) -> _Model:
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
    # Eager init, on purpose: XLA compiles a jitted ViT-S init in ~10 s (per architecture), while
    # eager ops are compiled per shape, and candidates of one space share a handful of layer shapes.
    init = module.init if shared is None else shared.init
    return _Model(module=module, f=f, vmap_axes=vmap_axes, init=init, shared=shared)


def _run(model: _Model, options: ScoreOptions, input_shape, config) -> dict[str, float]:
    import jax
    import jax.numpy as jnp

    from . import data, proxies

    dtype = jnp.float64 if options.float64 else jnp.float32
    inputs = jnp.asarray(
        data.load_batch(options.data, options.batch, input_shape, options.seed), dtype
    )
    t0 = time.perf_counter()
    variables = _init(model, options.seed, inputs, dtype)
    params = variables["params"]
    state = {k: v for k, v in variables.items() if k != "params"}
    arch = ()
    own_params = params
    if model.shared is not None:  # the config's own parameters are a slice of the shared ones
        arch = (jnp.asarray(model.shared.encode(config), dtype),)
        own_params = model.shared.select(variables, config)["params"]
    n_params = sum(math.prod(p.shape) for p in jax.tree.leaves(own_params))
    init_seconds = time.perf_counter() - t0
    if model.kernel is None:
        _compile(model, options, params, state, inputs, arch)
    t0 = time.perf_counter()
    kernel = np.asarray(jax.block_until_ready(model.kernel(params, state, inputs, *arch)))
    kernel_seconds = time.perf_counter() - t0
    out = proxies.kernel_proxies(kernel, n_params)
    out["init_seconds"] = init_seconds
    out["kernel_seconds"] = kernel_seconds
    out["params"] = n_params
    out["flops"] = model.forward_flops
    return out


def _init(model: _Model, seed: int, inputs, dtype) -> dict:
    """Initial variables in ``dtype``; a shared graph's are kept per seed (one fits all configs)."""
    import jax
    import jax.numpy as jnp

    key = (seed, inputs.shape, jnp.dtype(dtype).name)
    if key in model.extra:
        return model.extra[key]
    variables = model.init(jax.random.PRNGKey(seed), inputs)
    variables = jax.tree.map(
        lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, variables
    )
    if model.shared is not None:
        while len(model.extra) >= 4:
            model.extra.pop(next(iter(model.extra)))
        model.extra[key] = variables
    return variables


def _compile(model: _Model, options: ScoreOptions, params, state, inputs, arch=()) -> None:
    import jax

    from . import ntk

    t0 = time.perf_counter()
    if model.vmap_axes is None and not jax.tree.leaves(state.get("batch_stats", {})):
        # bn="train" on a network without BatchNorm: no batch statistics couple the examples,
        # so the kernel is taken per example (the same kernel, far cheaper to structure)
        model.vmap_axes = ((0, None) if not arch else (0, None, None), 0)
    kernel_fn = ntk.ntk_fn(model.f, method=options.method, vmap_axes=model.vmap_axes)
    # Compiled from auto's own lowering of the chosen method: nothing is traced twice.
    exe = kernel_fn.compile((inputs, state, *arch), None, params)

    def kernel(params, state, inputs, *arch):
        return exe((inputs, state, *arch), None, params)

    model.kernel = kernel
    model.compile_seconds = time.perf_counter() - t0
    if options.method == "auto":  # explain() is cached: this reads the choice made while compiling
        xs = (inputs, state, *arch)
        expl = ntk.explain(model.f, xs, None, params, vmap_axes=model.vmap_axes)
        model.method = expl.method
        model.ntk_flops = expl.estimates[expl.method].flops
    else:
        model.method = options.method
        model.ntk_flops = _flops(exe.cost_analysis())
    if model.shared is not None:
        return  # the shared graph's FLOPs are not the config's: Scorer._own_flops counts those
    one = jax.tree.map(lambda a: a[:1], inputs)
    fwd = jax.jit(lambda p, s, x: model.f(p, (x, s))).lower(params, state, one).cost_analysis()
    model.forward_flops = _flops(fwd)


def _flops(cost) -> float | None:
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    if not cost or "flops" not in cost:
        return None
    return float(cost["flops"])


_DEFAULT_SCORER: Scorer | None = None  # shared by score() and score_many()


def score(space, config: dict, **options) -> dict[str, Any]:
    """Scores one architecture by the full O×O NTK at initialization, without training.

    Args:
      space: a space name (see ``ntknas spaces``) or a :class:`search_spaces.SearchSpace`.
      config: the architecture, as the space's ``suggest`` returns it (validated here).
      **options: fields of :class:`ScoreOptions` (batch, seed, data, num_classes, input_shape,
        bn, float64, method).

    Returns:
      A dict: ``space``, ``config``, ``description``; the proxies of
      :data:`ntknas.proxies.PROXIES` (``ntk_cond``, ``ntk_trace``, ..., ``params``, ``flops``);
      and how they were obtained: ``method`` (what auto chose), ``ntk_flops``, ``seconds`` (all
      of it), ``compile_seconds`` (0 when a compiled kernel was reused), ``init_seconds``,
      ``kernel_seconds`` (running the compiled kernel), ``batch``, ``data``, ``seed``, ``bn``,
      ``num_classes``, ``input_shape``, ``dtype``.

    Raises:
      ValueError: unknown space, a config outside the space, bad options.
      proxies.NonFiniteKernelError: the kernel holds NaN or inf.

    Example:
      >>> ntknas.score("mlp", {"depth": 2, "width": 64, "activation": "relu"})["ntk_cond"]
    """
    global _DEFAULT_SCORER
    if _DEFAULT_SCORER is None:
        _DEFAULT_SCORER = Scorer()
    return _DEFAULT_SCORER.score(space, config, ScoreOptions(**options))


def options_dict(options: ScoreOptions) -> dict[str, Any]:
    """The options as plain JSON-able values (for study attributes)."""
    d = asdict(options)
    d["input_shape"] = list(d["input_shape"]) if d["input_shape"] else None
    d["overrides"] = [list(kv) for kv in d["overrides"]]
    return d


def score_many(space, configs, *, on_row=None, **options):
    """Scores many configs in one process (JAX starts and compiles shared shapes once).

    Every config is validated before any is scored. A config whose scoring fails (NaN kernel,
    out of memory) gets a row with its ``error`` and no proxies; the others are still scored.

    Args:
      space: a space name or :class:`search_spaces.SearchSpace`.
      configs: an iterable of config dicts.
      on_row: called with ``(index, row)`` after each config (for progress).
      **options: fields of :class:`ScoreOptions`.

    Returns:
      A ``pandas.DataFrame``, one row per config in input order: ``config`` (canonical JSON),
      ``description``, the proxies, how they were obtained, and ``error`` (empty when scored).

    Raises:
      ValueError: unknown space, bad options, or a config outside the space (naming its index).
    """
    import pandas as pd

    from search_spaces import SearchSpace, get_space

    from .proxies import PROXIES

    space = space if isinstance(space, SearchSpace) else get_space(space)
    opts = ScoreOptions(**options)
    checked = []
    for i, config in enumerate(configs):
        try:
            checked.append(apply_overrides(space, config, opts))
        except (ValueError, TypeError) as e:
            raise ValueError(f"config {i + 1}: {e}") from None
    global _DEFAULT_SCORER
    if _DEFAULT_SCORER is None:
        _DEFAULT_SCORER = Scorer()
    rows = []
    for i, config in enumerate(checked):
        try:
            row = _DEFAULT_SCORER.score(space, config, opts)
            row["error"] = ""
        except Exception as e:  # one bad candidate must not lose the others' scores
            row = {"description": space.describe(config), "error": f"{type(e).__name__}: {e}"}
        row["config"] = canonical_json(config)
        row.pop("space", None)
        rows.append(row)
        if on_row is not None:
            on_row(i, row)
    first = ["config", "description", *PROXIES]
    df = pd.DataFrame(rows)
    rest = [c for c in df.columns if c not in first]
    return df.reindex(columns=[*first, *rest])
