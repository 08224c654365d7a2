"""Score a set of architectures with every proxy: the NTK family, params, FLOPs, NASWOT, SynFlow.

The NTK proxies come from one kernel per architecture (:class:`ntknas.scoring.Scorer`); NASWOT and
SynFlow are computed here. For a set of at least :data:`SHARED_GRAPH_MIN` architectures of a space
with a shared graph (nb201), both go through that graph, so the whole set compiles each function
once; a few architectures are cheaper to compile one by one (measured in experiments/README.md).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .. import proxies

# From this many configs on, score_all goes through a space's shared graph: its one compilation is
# slow and each of its kernels computes the largest network, so it only pays off for a few dozen
# configs (measured in experiments/README.md, "When compare uses the shared graph", on the nb201
# graph before it computed one conv per edge; not measured again since).
SHARED_GRAPH_MIN = 32
REFERENCE_PROXIES = proxies.REFERENCE_PROXIES  # NASWOT and SynFlow, computed here
# Seconds per architecture are reported per group: every NTK proxy comes from the same kernel.
SECONDS_COLUMNS = {
    "seconds_ntk": "init + one full O×O kernel + eigenvalues (all ntk_*/pntk_* proxies)",
    "seconds_params": "parameter count",
    "seconds_flops": "forward FLOPs (XLA cost analysis of the lowered forward)",
    "seconds_naswot": "one forward pass of the NASWOT batch",
    "seconds_synflow": "one forward and backward pass, one example",
}


class _Reference:
    """NASWOT and SynFlow of configs of one space, compiled once per (module, shapes)."""

    def __init__(self, space, options, naswot_batch: int, shared_graph: bool = True):
        self.space, self.options, self.naswot_batch = space, options, naswot_batch
        self.num_classes, self.input_shape = options.resolve_io(space)
        try:
            graph = space.shared_graph(self.num_classes, self.input_shape)
        except ValueError:  # no graph for this input
            graph = None
        self.graph = graph  # draws the initial values of the masked spaces, on either path
        self.shared = graph if shared_graph else None
        self._fns: dict = {}
        self._variables: Any = None

    def _module_and_variables(self, config, x):
        import jax

        from ..scoring import own_variables

        key = jax.random.PRNGKey(self.options.seed)
        if self.shared is None:  # the values the scorer's own path uses
            module = self.space.build(config, self.num_classes, self.input_shape)
            return module, own_variables(module, self.graph, config, key, x), ()
        arch = (np.asarray(self.shared.encode(config), np.float32),)
        if self.shared.init is None:  # a masked graph: each config's values, drawn for it
            return self.shared.module, self.shared.init_own(key, x[:1], config), arch
        if self._variables is None:  # every config's values at once (nb201)
            self._variables = self.shared.init(key, x)
        return self.shared.module, self._variables, arch

    def _fn(self, kind, module):
        from ..proxies import naswot, synflow

        key = (kind, module if self.shared is not None else id(module))
        if key not in self._fns:
            if kind == "naswot":
                self._fns[key] = naswot.naswot_fn(module, train=self.options.bn == "train")
            else:
                self._fns[key] = synflow.synflow_fn(module, self.input_shape)
            if self.shared is None:  # standalone modules are not reused
                self._fns = {key: self._fns[key]}
        return self._fns[key]

    def scores(self, config) -> dict[str, float]:
        from .. import data
        from ..proxies import naswot

        x = data.load_batch(
            self.options.data, self.naswot_batch, self.input_shape, self.options.seed
        )
        module, variables, arch = self._module_and_variables(config, x)
        out = {}
        t0 = time.perf_counter()
        try:
            out["naswot"] = naswot.naswot_score(self._fn("naswot", module)(variables, x, *arch))
            out["seconds_naswot"] = time.perf_counter() - t0
        except naswot.NotSownError:  # the space's modules do not expose their ReLU codes
            out["naswot"] = float("nan")
        params = variables["params"]
        state = {k: v for k, v in variables.items() if k != "params"}
        t0 = time.perf_counter()
        out["synflow"] = self._fn("synflow", module)(params, state, *arch)
        out["seconds_synflow"] = time.perf_counter() - t0
        return out


def _cost_seconds(space, config, options) -> dict[str, float]:
    """Seconds to count the parameters and the FLOPs of a config alone (fresh, uncached)."""
    from ..scoring import Scorer

    scorer = Scorer()
    t0 = time.perf_counter()
    scorer.count_params(space, config, options)
    t1 = time.perf_counter()
    scorer.own_flops(space, config, options)
    return {"seconds_params": t1 - t0, "seconds_flops": time.perf_counter() - t1}


class ProxyScorer:
    """Every proxy of one config at a time, with its compiled functions kept between calls.

    One instance serves many option sets: the NTK kernels are compiled once per (architecture or
    shared graph, shapes, BatchNorm mode) by its :class:`ntknas.scoring.Scorer`, and NASWOT and
    SynFlow once per option set, so a study can loop over configs outside and settings (data,
    BatchNorm) inside without compiling anything twice.

    Args:
      scorer: the NTK :class:`ntknas.scoring.Scorer`; a shared-graph one by default.
      naswot_batch: examples in NASWOT's batch (Mellor et al. use 128; it needs N <= distinct
        codes, and log|det| over 4 examples says little).
      shared_graph: compute NASWOT and SynFlow through the space's shared graph, if it has one.
    """

    def __init__(self, scorer=None, naswot_batch: int = 32, shared_graph: bool = True):
        from ..scoring import Scorer

        self.scorer = scorer if scorer is not None else Scorer(shared_graphs=True)
        self.naswot_batch = naswot_batch
        self.shared_graph = shared_graph
        self._references: dict = {}

    def score_row(self, space, config, options, *, time_costs: bool = False) -> dict[str, Any]:
        """One row: ``config`` (canonical JSON), ``description``, every proxy of
        :data:`ntknas.proxies.PROXIES` and :data:`REFERENCE_PROXIES`, the ``seconds_*`` columns,
        ``compile_seconds``, ``method`` and ``error`` (empty, or why the config failed: a failing
        config gives a row, never an exception).

        Args:
          time_costs: also time params and FLOPs alone, from scratch (``seconds_params``,
            ``seconds_flops``; it builds and lowers the config again, so only for a few rows).
        """
        from ..scoring import canonical_json

        row: dict[str, Any] = {"config": canonical_json(config)}
        try:
            score = self.scorer.score(space, config, options)
            row["description"] = score.description
            row.update({name: score[name] for name in proxies.PROXIES})
            row["method"], row["compile_seconds"] = score.method, score.compile_seconds
            row["seconds_ntk"] = score.init_seconds + score.kernel_seconds
            if time_costs:
                row.update(_cost_seconds(space, config, options))
            key = (space.name, options)
            if key not in self._references:
                self._references[key] = _Reference(
                    space, options, self.naswot_batch, self.shared_graph
                )
            row.update(self._references[key].scores(config))
            row["error"] = ""
        except Exception as e:  # one bad candidate must not lose the others' scores
            row["error"] = f"{type(e).__name__}: {e}"
            try:
                row["description"] = space.describe(config)
            except Exception:  # a config outside the space may not describe either
                row["description"] = row["config"]
        return row


def score_all(
    space,
    configs,
    options,
    *,
    naswot_batch: int = 32,
    timed_cost_rows: int = 5,
    on_row=None,
):
    """Every proxy of every config, one row each, with seconds per proxy group.

    Args:
      space: a :class:`search_spaces.SearchSpace`.
      configs: validated configs.
      options: :class:`ntknas.scoring.ScoreOptions` (batch, seed, data, bn, dtype, method).
      naswot_batch: examples in NASWOT's batch (see :class:`ProxyScorer`).
      timed_cost_rows: for the first this many configs, also time params and FLOPs alone
        (``seconds_params``, ``seconds_flops``; NaN for the others: the scorer gets both cheaply).
      on_row: called with ``(index, row)`` after each config.

    Through the space's shared graph (if any) from :data:`SHARED_GRAPH_MIN` configs on.

    Returns:
      A ``pandas.DataFrame`` of :meth:`ProxyScorer.score_row` rows, proxies first.
    """
    import pandas as pd

    from ..scoring import Scorer

    configs = list(configs)
    shared = len(configs) >= SHARED_GRAPH_MIN
    scorer = ProxyScorer(Scorer(shared_graphs=shared), naswot_batch, shared_graph=shared)
    rows = []
    for i, config in enumerate(configs):
        row = scorer.score_row(space, config, options, time_costs=i < timed_cost_rows)
        rows.append(row)
        if on_row is not None:
            on_row(i, row)
    first = ["config", "description", *proxies.PROXIES, *REFERENCE_PROXIES]
    df = pd.DataFrame(rows)
    return df.reindex(columns=[*first, *[c for c in df.columns if c not in first]])
