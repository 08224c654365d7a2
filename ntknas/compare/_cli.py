"""``ntknas compare``: its arguments and what it runs (cli.py registers the command)."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The compare-specific arguments (the scoring group is cli.py's)."""
    p.add_argument("--space", required=True, help="search space (see `ntknas spaces`)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--configs", help="a JSONL file, one config per line")
    src.add_argument(
        "--samples",
        type=int,
        default=None,
        help="K architectures drawn with --seed: from the ground-truth rows if given, else from "
        "the space (default 20)",
    )
    p.add_argument("--ground-truth", default=None, help="CSV with a metric per architecture")
    p.add_argument(
        "--metric",
        default=None,
        help="ground-truth column(s) to correlate with, comma separated (default: all numeric)",
    )
    p.add_argument(
        "--key",
        default="config",
        help="ground-truth column naming the architecture: a JSON config, or COLUMN=FIELD for "
        "one config field, e.g. op_indices=cell for NAS-Bench-201 (default %(default)s)",
    )
    p.add_argument("--out", default="compare-out", help="output folder (default %(default)s)")
    p.add_argument(
        "--naswot-batch", type=int, default=32, help="NASWOT's batch (default %(default)s)"
    )
    p.add_argument(
        "--bootstrap", type=int, default=1000, help="bootstrap resamples (default %(default)s)"
    )


def _truth(args, space, usage_error):
    """(truth frame indexed by canonical config JSON, metric columns, configs in file order)."""
    import pandas as pd

    from ..scoring import canonical_json

    column, _, field = args.key.partition("=")
    try:
        df = pd.read_csv(args.ground_truth, dtype={column: str})
    except OSError as e:
        raise usage_error(f"cannot read {args.ground_truth}: {e.strerror}") from None
    if column not in df.columns:
        raise usage_error(
            f"--key {column!r} is not a column of {args.ground_truth}; columns: {list(df.columns)}"
        )
    configs = []
    for i, value in enumerate(df[column], start=2):
        try:
            config = json.loads(value) if not field else {field: value}
            configs.append(space.validate(config))
        except (ValueError, TypeError) as e:
            raise usage_error(f"{args.ground_truth} line {i}: {e}") from None
    numeric = [c for c in df.columns if c != column and pd.api.types.is_numeric_dtype(df[c])]
    metrics = args.metric.split(",") if args.metric else numeric
    for m in metrics:
        if m not in numeric:
            raise usage_error(f"--metric {m!r} is not a numeric column; numeric ones: {numeric}")
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


def run(args, space, options: dict, read_configs, usage_error) -> int:
    """Scores the chosen architectures with every proxy and writes the report to ``--out``."""
    from ..scoring import ScoreOptions
    from . import score_all
    from ._report import write_report

    if args.samples is not None and args.samples < 1:
        raise usage_error(f"--samples must be >= 1, got {args.samples}")
    if args.naswot_batch < 2:
        raise usage_error(f"--naswot-batch must be >= 2, got {args.naswot_batch}")
    truth, metrics = None, []
    if args.ground_truth:
        truth, metrics, truth_configs = _truth(args, space, usage_error)
    if args.configs:
        configs = []
        for i, c in enumerate(read_configs(args), start=1):
            try:
                configs.append(space.validate(c))
            except (ValueError, TypeError) as e:
                raise usage_error(f"config {i}: {e}") from None
    elif truth is not None:
        k = min(args.samples or len(truth_configs), len(truth_configs))
        picks = np.random.default_rng(args.seed).choice(len(truth_configs), k, replace=False)
        configs = [truth_configs[i] for i in sorted(picks)]
    else:
        configs = _sample_space(space, args.samples or 20, args.seed)
    opts = ScoreOptions(**options)
    df = score_all(
        space,
        configs,
        opts,
        naswot_batch=args.naswot_batch,
        on_row=lambda i, r: print(f"{i + 1}/{len(configs)} {r['description']}", file=sys.stderr),
    )
    if truth is not None:
        missing = [c for c in df["config"] if c not in truth.index]
        if missing:
            raise usage_error(f"{len(missing)} config(s) have no ground truth, e.g. {missing[0]}")
        for m in metrics:
            df[m] = [truth.loc[c, m] for c in df["config"]]
    result = write_report(
        df,
        args.out,
        metrics,
        n_boot=args.bootstrap,
        seed=args.seed,
        title=f"Proxy comparison: {space.name}, {len(df)} architectures",
    )
    sys.stdout.write(result["summary"])
    print(f"wrote {len(result['files'])} files to {args.out}", file=sys.stderr)
    return 1 if (df["error"] != "").any() else 0
