"""The entry points: score one architecture, or many in one process."""

from __future__ import annotations

import functools

from ._options import ScoreOptions, apply_overrides, canonical_json
from ._record import Score
from ._scorer import Scorer

# score_many goes through a space's shared graph from this many configs on; fewer are scored
# through their own networks, as is a single score(): the graph's one compilation costs more
# than one own network's, and each of its kernels computes the largest network. Figures in
# experiments/README.md.
SHARED_GRAPH_MIN = 8


@functools.cache
def _default_scorer(shared_graphs: bool = False) -> Scorer:
    """The scorers :func:`score` and :func:`score_many` share, so they reuse compiled kernels."""
    return Scorer(shared_graphs=shared_graphs)


def score(space, config: dict, **options) -> Score:
    """Scores one architecture by the full O×O NTK at initialization, without training.

    The config's own network is compiled (path ``"own"``): for one config that is faster than a
    space's shared graph (see :func:`score_many`).

    Args:
      space: a space name (see ``ntknas spaces``) or a :class:`search_spaces.SearchSpace`.
      config: the architecture, as the space's ``suggest`` returns it (validated here).
      **options: fields of :class:`ScoreOptions` (batch, seed, data, num_classes, input_shape,
        bn (``"train"``, batch statistics, by default, as in a search), float64, method).

    Returns:
      A :class:`Score`: ``score["ntk_cond"]`` reads a proxy of :data:`ntknas.proxies.PROXIES`,
      its attributes say how it was obtained (``method``, ``seconds``, ...), and
      ``score.as_dict()`` is the flat record stored with a trial.

    Raises:
      ValueError: unknown space, a config outside the space, bad options.
      proxies.NonFiniteKernelError: the kernel holds NaN or inf.

    Example:
      >>> ntknas.score("mlp", {"depth": 2, "width": 64, "activation": "relu"})["ntk_cond"]
    """
    return _default_scorer().score(space, config, ScoreOptions(**options))


def score_many(space, configs, *, on_row=None, **options):
    """Scores many configs in one process (JAX starts and compiles shared shapes once).

    From :data:`SHARED_GRAPH_MIN` configs on, each goes through the space's shared graph where
    the path rule of :class:`Scorer` finds it cheaper (one compilation for all), else through
    its own network; the ``path`` column says which path scored each row. Both paths draw the
    same initial values, so the path changes the speed, not the scores. Every config is
    validated before any is scored. A config whose scoring fails (NaN kernel, out of memory)
    gets a row with its ``error`` and no proxies; the others are still scored.

    Args:
      space: a space name or :class:`search_spaces.SearchSpace`.
      configs: an iterable of config dicts.
      on_row: called with ``(index, row)`` after each config (for progress).
      **options: fields of :class:`ScoreOptions`.

    Returns:
      A ``pandas.DataFrame``, one row per config in input order: ``config`` (canonical JSON),
      ``description``, ``score``, the proxies, how they were obtained (:meth:`Score.as_dict`),
      and ``error`` (empty when scored). ``score`` ranks the configs the validated way: the
      space's ``default_objective`` evaluated over the configs scored here (its rank sum, or
      the rank of its one proxy; higher is better; NaN for a row that failed). A rank needs
      others to rank against, so for a single config there is no ``score`` column.

    Raises:
      ValueError: unknown space, bad options, or a config outside the space (naming its index).
    """
    import pandas as pd

    from search_spaces import SearchSpace, get_space

    from ..proxies import PROXIES, needs_blocks, parse_terms

    space = space if isinstance(space, SearchSpace) else get_space(space)
    opts = ScoreOptions(**options)
    checked = []
    for i, config in enumerate(configs):
        try:
            checked.append(apply_overrides(space, config, opts))
        except (ValueError, TypeError) as e:
            raise ValueError(f"config {i + 1}: {e}") from None
    scorer = _default_scorer(shared_graphs=len(checked) >= SHARED_GRAPH_MIN)
    # the per-block proxies where the space's default objective (the score column) reads them
    blocks = needs_blocks(parse_terms(space.default_objective)[0]) and len(checked) > 1
    rows = []
    for i, config in enumerate(checked):
        try:
            row = scorer.score(space, config, opts, blocks=blocks).as_dict()
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
    if len(df) > 1:
        first.insert(2, "score")
        df["score"] = objective_score(df, space.default_objective)
    rest = [c for c in df.columns if c not in first]
    return df.reindex(columns=[*first, *rest])


def objective_score(df, objective: str):
    """``objective`` evaluated over the rows of ``df``, higher is better: the rank sum of its
    proxies (one proxy: its rank; several separated by commas: the sum of their ranks), each
    ranked in its direction among the rows; NaN where a proxy is missing."""
    from .. import proxies

    terms, _ = proxies.parse_terms(objective)
    columns = {t.proxy: df[t.proxy] if t.proxy in df else [float("nan")] * len(df) for t in terms}
    return proxies.rank_sum_of(columns, terms)
