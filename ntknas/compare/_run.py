"""``compare.run``: pick the architectures, score every proxy, join the ground truth, report."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._report import write_report
from ._scores import score_all


def run(
    space,
    configs: Sequence[dict] | None = None,
    *,
    samples: int | None = None,
    ground_truth: str | None = None,
    metric: str | None = None,
    key: str = "config",
    out: str = "compare-out",
    naswot_batch: int = 32,
    bootstrap: int = 1000,
    on_row: Callable[[int, int, dict], None] | None = None,
    **score_options: Any,
):
    """Scores architectures with every proxy and writes the report (CSVs, summary, plots) to
    ``out``; with a ground truth, each proxy's rank correlation with it.

    Args:
      space: a :class:`search_spaces.SearchSpace`.
      configs: the architectures (validated against ``space`` here). Without them: ``samples``
        rows of the ground truth drawn with the seed (all of them by default), or ``samples``
        configs of the space (20 by default).
      samples: how many architectures to draw when ``configs`` is None.
      ground_truth: a CSV file with a metric per architecture.
      metric: ground-truth column(s) to correlate with, comma separated (default: all numeric).
      key: the ground-truth column naming the architecture: a JSON config, or ``COLUMN=FIELD``
        for one config field (``op_indices=cell`` for NAS-Bench-201).
      out: the output folder.
      naswot_batch: NASWOT's batch.
      bootstrap: bootstrap resamples of the correlations.
      on_row: called with ``(index, total, row)`` after each architecture is scored.
      **score_options: fields of :class:`ntknas.scoring.ScoreOptions`; its ``seed`` also draws
        the samples and the bootstrap.

    Returns:
      ``(scores, report)``: a ``pandas.DataFrame`` with a row per architecture (its ``error``
      column is empty where every proxy was computed) and ``{"summary": markdown text, "files":
      [paths written]}``.

    Raises:
      ValueError: a bad count, an unreadable or malformed ground truth, a config outside the
        space, or a config without ground truth; the message says which.
    """
    from ..scoring import ScoreOptions

    if samples is not None and samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if naswot_batch < 2:
        raise ValueError(f"naswot_batch must be >= 2, got {naswot_batch}")
    opts = ScoreOptions(**score_options)
    truth, metrics = None, []
    if ground_truth:
        truth, metrics, truth_configs = _truth(ground_truth, key, metric, space)
    if configs is not None:
        checked = []
        for i, c in enumerate(configs, start=1):
            try:
                checked.append(space.validate(c))
            except (ValueError, TypeError) as e:
                raise ValueError(f"config {i}: {e}") from None
        configs = checked
    elif truth is not None:
        k = min(samples or len(truth_configs), len(truth_configs))
        picks = np.random.default_rng(opts.seed).choice(len(truth_configs), k, replace=False)
        configs = [truth_configs[i] for i in sorted(picks)]
    else:
        configs = _sample_space(space, samples or 20, opts.seed)
    df = score_all(
        space,
        configs,
        opts,
        naswot_batch=naswot_batch,
        on_row=None if on_row is None else lambda i, r: on_row(i, len(configs), r),
    )
    if truth is not None:
        missing = [c for c in df["config"] if c not in truth.index]
        if missing:
            raise ValueError(f"{len(missing)} config(s) have no ground truth, e.g. {missing[0]}")
        for m in metrics:
            df[m] = [truth.loc[c, m] for c in df["config"]]
    report = write_report(
        df,
        out,
        metrics,
        n_boot=bootstrap,
        seed=opts.seed,
        title=f"Proxy comparison: {space.name}, {len(df)} architectures",
    )
    return df, report


def _truth(path: str, key: str, metric: str | None, space):
    """(truth frame indexed by canonical config JSON, metric columns, configs in file order)."""
    import pandas as pd

    from ..scoring import canonical_json

    column, _, field = key.partition("=")
    try:
        df = pd.read_csv(path, dtype={column: str})
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror}") from None
    if column not in df.columns:
        raise ValueError(f"key {column!r} is not a column of {path}; columns: {list(df.columns)}")
    configs = []
    for i, value in enumerate(df[column], start=2):
        try:
            config = json.loads(value) if not field else {field: value}
            configs.append(space.validate(config))
        except (ValueError, TypeError) as e:
            raise ValueError(f"{path} line {i}: {e}") from None
    numeric = [c for c in df.columns if c != column and pd.api.types.is_numeric_dtype(df[c])]
    metrics = metric.split(",") if metric else numeric
    for m in metrics:
        if m not in numeric:
            raise ValueError(f"metric {m!r} is not a numeric column; numeric ones: {numeric}")
    df.index = [canonical_json(c) for c in configs]
    return df[metrics], metrics, configs


def _sample_space(space, k: int, seed: int) -> list[dict]:
    if space.size is not None and space.size <= 1_000_000:
        all_configs = list(space.enumerate())
        picks = np.random.default_rng(seed).choice(
            len(all_configs), min(k, len(all_configs)), False
        )
        return [all_configs[i] for i in picks]
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return [space.validate(space.suggest(study.ask())) for _ in range(k)]
