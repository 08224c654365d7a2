"""Which rank-sum combination of proxies ranks NAS-Bench-201 cells best, checked out of sample?

Reads the per-setting scores of experiments/nb201_proxies.py. Every combination of one to
``--max-size`` proxies is a TE-NAS-style rank sum (each proxy ranked in its published direction,
:func:`ntknas.compare._report.sign`; directions are never fitted). Choosing the best of many
combinations on the same cells flatters it, so the cells are split in two halves: a combination is
chosen on one half and its Spearman is reported on the other (both ways), next to its Spearman on
all cells. It reads the study's part files through nb201_proxies.read_scores.

Usage:
  python experiments/nb201_combos.py --settings digits:train gaussian:train --top 15
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import nb201_proxies  # noqa: E402  (this directory: the study's files and their reader)

from ntknas.compare._report import sign  # noqa: E402
from ntknas.compare._stats import rank_correlation, rank_sum  # noqa: E402

POOL = (
    "ntk_cond",
    "ntk_trace",
    "ntk_trace_per_param",
    "ntk_eig_min",
    "ntk_eig_max",
    "ntk_corr_cond",
    "ntk_eff_rank",
    "ntk_top_share",
    "pntk_trace_cond",
    "pntk_logit_cond",
    "pntk_sum_cond",
    "pntk_sum_trace",
    "params",
    "flops",
    "naswot",
    "synflow",
)


def load(setting: str, batch: int, size: int, metric: str, holdout=False) -> pd.DataFrame:
    df = nb201_proxies.read_scores(setting, batch, size, holdout)
    if df is None:
        raise FileNotFoundError(nb201_proxies.path(setting, batch, size, holdout))
    df = nb201_proxies.with_truth(df)
    return df.dropna(subset=[metric]).sort_values("cell").reset_index(drop=True)


def combo_score(df: pd.DataFrame, combo: tuple[str, ...]) -> np.ndarray:
    cols = {p: df[p].to_numpy(dtype=np.float64) for p in combo}
    return rank_sum(cols, {p: sign(p) for p in combo})


def log_sum(df: pd.DataFrame, combo: tuple[str, ...]) -> np.ndarray:
    """Σ sign_p · log(value_p): a per-architecture score (no population needed), NaN where a
    value is not positive."""
    total = np.zeros(len(df))
    for p in combo:
        v = df[p].to_numpy(dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            total = total + sign(p) * np.where(v > 0, np.log(v), np.nan)
    return total


def spearman(x, y) -> float:
    return rank_correlation(x, y, n_boot=0)["spearman"]  # NaN pairs dropped


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--settings", nargs="+", default=["digits:train", "gaussian:train"])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--input-size", type=int, default=16)
    p.add_argument("--metric", default="val_acc_cifar10")
    p.add_argument("--max-size", type=int, default=3)
    p.add_argument("--top", type=int, default=15)
    p.add_argument(
        "--check",
        nargs="+",
        default=None,
        metavar="COMBINATION",
        help="only report these combinations (a+b+c), with bootstrap intervals, on the study's "
        "cells and on the held-out cells (nb201_proxies.py --holdout), every metric",
    )
    args = p.parse_args()
    if args.check:
        return check(args)
    for setting in args.settings:
        df = load(setting, args.batch, args.input_size, args.metric)
        pool = [c for c in POOL if c in df and np.isfinite(df[c].astype(float)).any()]
        combos = [c for k in range(1, args.max_size + 1) for c in itertools.combinations(pool, k)]
        y = df[args.metric].to_numpy(dtype=np.float64)
        halves = [np.arange(len(df)) % 2 == h for h in (0, 1)]  # by cell id: a fixed split
        rows = []
        for combo in combos:
            row = {"combination": "+".join(combo), "size": len(combo)}
            row["all"] = spearman(combo_score(df, combo), y)
            row["log_sum"] = spearman(log_sum(df, combo), y)
            row["kernel_only"] = not set(combo) & {"naswot", "synflow"}
            for h, mask in enumerate(halves):  # ranks within the half, as a user's sample would
                part = df[mask].reset_index(drop=True)
                row[f"half{h}"] = spearman(combo_score(part, combo), y[mask])
            rows.append(row)
        table = pd.DataFrame(rows)
        # out of sample: the combination chosen on one half, scored on the other
        picks = []
        for h in (0, 1):
            best = table.sort_values(f"half{h}", ascending=False).iloc[0]
            picks.append((h, best["combination"], best[f"half{h}"], best[f"half{1 - h}"]))
        print(f"\n## {setting}: {len(df)} cells, {len(combos)} combinations, {args.metric}\n")
        head = "| combination | rank sum: all cells | half 0 | half 1 | log sum: all cells |"
        for title, rows in (
            ("every proxy", table),
            ("only what one NTK and the parameter count give", table[table["kernel_only"]]),
        ):
            print(f"\n{title}:\n\n{head}\n|---|---|---|---|---|")
            for _, r in rows.sort_values("all", ascending=False).head(args.top).iterrows():
                print(
                    f"| {r['combination']} | {r['all']:+.3f} | {r['half0']:+.3f} "
                    f"| {r['half1']:+.3f} | {r['log_sum']:+.3f} |"
                )
        for h, name, inside, outside in picks:
            print(
                f"\nchosen on half {h}: {name} (Spearman {inside:+.3f} there, "
                f"{outside:+.3f} on half {1 - h})"
            )
        singles = table[table["size"] == 1].sort_values("all", ascending=False).head(5)
        print(
            "\nbest single proxies:",
            ", ".join(f"{r['combination']} {r['all']:+.3f}" for _, r in singles.iterrows()),
        )
    return 0


def check(args) -> int:
    """Chosen combinations against the best single proxies, on the sample and the held-out
    cells, for CIFAR-10, CIFAR-100 and ImageNet16-120, with 95% bootstrap intervals."""
    metrics = ["val_acc_cifar10", "val_acc_cifar100", "val_acc_ImageNet16-120"]
    for setting in args.settings:
        for prefix, holdout in (("nb201", False), ("nb201holdout", True)):
            try:
                df = load(setting, args.batch, args.input_size, metrics[0], holdout)
            except FileNotFoundError:
                print(f"\n{prefix} {setting}: no scores")
                continue
            print(f"\n## {prefix} {setting}: {len(df)} cells (Spearman [95% CI], Kendall)\n")
            print("| proxy | " + " | ".join(metrics) + " |")
            print("|---|" + "---|" * len(metrics))
            for name in [*args.check, "params", "naswot", "synflow", "ntk_cond"]:
                combo = tuple(name.split("+"))
                x = (
                    combo_score(df, combo)
                    if len(combo) > 1
                    else sign(name) * df[name].to_numpy(dtype=np.float64)
                )
                cells = []
                for m in metrics:
                    r = rank_correlation(x, df[m].to_numpy(dtype=np.float64), n_boot=1000, seed=0)
                    cells.append(
                        f"{r['spearman']:+.3f} [{r['spearman_lo']:+.2f}, {r['spearman_hi']:+.2f}]"
                        f", τ {r['kendall']:+.3f}"
                    )
                label = (
                    f"rank({name})" if len(combo) > 1 else f"{'-' if sign(name) < 0 else ''}{name}"
                )
                print(f"| {label} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
