"""The tables of the ViT proxy study (experiments/vit_proxies.py): dev, the choice, then test.

Reads experiments/out/vit_<space>_<setting>[_blocks].csv and the ground truth. Every correlation
is Spearman ρ (and Kendall τ) of a proxy *read in its direction* with ImageNet top-1: the
proxy's values times its report sign (``+`` bigger is better: params, FLOPs, traces, λmin, DSS,
SynFlow, rank sums; ``-`` smaller is better: condition numbers), so a useful proxy has ρ > 0.
Intervals: 95% percentile bootstrap over architectures (1,000 resamples, seed 0).

Within budgets: ``deciles``: the mean of ρ within the ten parameter deciles (``params_M``,
AutoFormer's count at 224x224, patch 16, 1,000 classes) of the rows; ``budget``: ρ over the rows
inside AutoFormer's search budget for the space (T 5-6M, S 22-23M, B 42-54M).

The choice uses dev rows only: among single proxies and TE-NAS rank sums of two or three proxies
that ``ntknas search`` computes (its registry's PROXIES), the one with the highest mean of the
overall ρ and the within-decile ρ on the dev sample. The test rows are then read once.

Usage:
  python experiments/vit_report.py > experiments/out/vit_report.md
"""

from __future__ import annotations

import itertools
import os
import sys

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import vit_proxies  # noqa: E402  (this directory: the study's files)

from ntknas import proxies  # noqa: E402
from ntknas.compare._stats import rank_correlation  # noqa: E402

BUDGETS = {"tiny": (5e6, 6e6), "small": (22e6, 23e6), "base": (42e6, 54e6)}
METRIC = "imagenet_val_top1_supernet"
RECORDS = {**proxies.REGISTRY, **proxies.VIT_PROXIES}
SEARCHABLE = [p for p in proxies.PROXIES if p not in ("ntk_eig_max",)]  # eig_max: ≈ trace
SIZE = ("params", "flops", "params_M", "flops_as_given")


def sign(name: str) -> int:
    if name.startswith("rank(") or name in ("params_M", "flops_as_given"):
        return 1
    return RECORDS[name].report_sign


def load(space: str, setting: str = "default", blocks: bool = False) -> pd.DataFrame | None:
    path = vit_proxies.out_path(space, setting, blocks)
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return None
    df = pd.read_csv(path)
    df = df[df["error"].isna() | (df["error"] == "")]
    return df.drop_duplicates("arch_id").reset_index(drop=True)


def column(df: pd.DataFrame, name: str) -> np.ndarray:
    """Oriented values (bigger = better) of a proxy or a rank sum ``rank(a+b+...)``."""
    if name.startswith("rank("):
        terms = name[len("rank(") : -1].split("+")
        cols = {t: column(df, t) for t in terms}
        return proxies.rank_sum(cols, dict.fromkeys(terms, 1))
    return sign(name) * df[name].to_numpy(dtype=np.float64)


def rho(df, name, n_boot=1000) -> dict:
    return rank_correlation(column(df, name), df[METRIC].to_numpy(float), n_boot=n_boot)


def within_deciles(df, name) -> float:
    groups = pd.qcut(df["params_M"], 10, labels=False, duplicates="drop")
    values = []
    for g in np.unique(groups):
        part = df[groups == g]
        if len(part) >= 4:
            values.append(rho(part, name, n_boot=0)["spearman"])
    values = [v for v in values if np.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


def in_budget(df, space) -> pd.DataFrame:
    lo, hi = BUDGETS[space]
    return df[(df["params_M"] * 1e6 >= lo) & (df["params_M"] * 1e6 <= hi)]


def fmt(r: dict, kendall: bool = True) -> str:
    if not np.isfinite(r.get("spearman", np.nan)):
        return "n/a"
    text = f"{r['spearman']:+.2f} [{r['spearman_lo']:+.2f}, {r['spearman_hi']:+.2f}]"
    return text + (f", τ {r['kendall']:+.2f}" if kendall else "")


def row_of(df, space, name) -> list[str]:
    b = in_budget(df, space)
    budget = fmt(rho(b, name), kendall=False) if len(b) >= 5 else f"n={len(b)}"
    return [fmt(rho(df, name)), f"{within_deciles(df, name):+.2f}", budget]


def choose(dev: pd.DataFrame, pool: list[str], max_size: int = 3) -> list[tuple]:
    """Candidates scored on dev: (criterion, overall ρ, within-decile ρ, name), best first."""
    out = []
    for k in range(1, max_size + 1):
        for combo in itertools.combinations(pool, k):
            name = combo[0] if k == 1 else "rank(" + "+".join(combo) + ")"
            overall = rho(dev, name, n_boot=0)["spearman"]
            deciles = within_deciles(dev, name)
            out.append(((overall + deciles) / 2, overall, deciles, name))
    return sorted(out, key=lambda t: -np.nan_to_num(t[0], nan=-9))


def objective_string(name: str) -> str:
    """The choice in ntknas's objective syntax, every term with its search direction."""
    terms = name[len("rank(") : -1].split("+") if name.startswith("rank(") else [name]
    parts = [f"{t}:{'max' if sign(t) > 0 else 'min'}" for t in terms]
    return f"rank({'+'.join(parts)})" if len(parts) > 1 else parts[0]


def size_baselines() -> list[str]:
    truth = pd.read_csv(vit_proxies.TRUTH)
    lines = [
        "| space | split | rows | params_M | flops (file) | params in budget (rows) |",
        "|---|---|---|---|---|---|",
    ]
    for space in vit_proxies.SPACES:
        for split in ("dev", "test"):
            df = truth[(truth.space == space) & (truth.split == split)].reset_index(drop=True)
            b = in_budget(df, space)
            budget = f"{fmt(rho(b, 'params_M'), False)} ({len(b)})" if len(b) >= 5 else len(b)
            deciles = within_deciles(df, "params_M")
            lines.append(
                f"| {space} | {split} | {len(df)} | {fmt(rho(df, 'params_M'))}"
                f" (deciles {deciles:+.2f}) | {fmt(rho(df, 'flops_as_given'))} | {budget} |"
            )
    return lines


def space_tables(space: str) -> list[str]:
    df = load(space)
    if df is None or len(df) < 5:
        return [f"(too few scores for {space})"]
    dev, test = df[df.split == "dev"], df[df.split == "test"]
    lines = [f"### {space}: default setting, {len(dev)} dev rows, {len(test)} test rows", ""]
    names = [
        *[p for p in proxies.PROXIES if p in df],
        "synflow",
        "dss",
        "params_M",
        "flops_as_given",
    ]
    picks = choose(dev, SEARCHABLE)
    best = picks[0][3]
    with_refs = choose(dev, [*SEARCHABLE, "synflow", "dss"], max_size=2)[0][3]
    shown = [*names, *dict.fromkeys([best, with_refs])]
    lines += [
        "| proxy (sign) | dev ρ [CI], τ | dev deciles | dev budget | test ρ [CI], τ | test deciles"
        " | test budget |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in shown:
        s = "+" if sign(name) > 0 else "−"
        lines.append(
            f"| {name} ({s}) | "
            + " | ".join(row_of(dev, space, name) + row_of(test, space, name))
            + " |"
        )
    lines += [
        "",
        f"Choice on dev (search-computable proxies): `{objective_string(best)}` "
        f"(dev: overall {picks[0][1]:+.3f}, deciles {picks[0][2]:+.3f}); next: "
        + "; ".join(f"`{p[3]}` {p[1]:+.3f}/{p[2]:+.3f}" for p in picks[1:6]),
        f"Best on dev with SynFlow/DSS allowed (pairs): `{objective_string(with_refs)}`.",
        "",
    ]
    return lines


def settings_table(space: str) -> list[str]:
    base = load(space)
    lines = []
    for setting in vit_proxies.SETTINGS:
        if setting == "default":
            continue
        other = load(space, setting)
        if other is None or base is None:
            continue
        ids = set(other.arch_id) & set(base[base.split == "dev"].arch_id)
        if len(ids) < 5:
            continue
        a = base[base.arch_id.isin(ids)].sort_values("arch_id").reset_index(drop=True)
        b = other[other.arch_id.isin(ids)].sort_values("arch_id").reset_index(drop=True)
        if not lines:
            lines = [
                f"### {space}: other settings on the same dev rows (ρ, no CI)",
                "",
                "| proxy | default | "
                + " | ".join(
                    s for s in vit_proxies.SETTINGS if s != "default" and load(space, s) is not None
                )
                + " |",
            ]
            lines.append("|" + "---|" * (lines[-1].count("|") - 1))
            rows = {}
        for name in [
            "ntk_cond",
            "ntk_trace",
            "ntk_eig_min",
            "ntk_eff_rank",
            "pntk_sum_cond",
            "pntk_trace_cond",
            "ntk_corr_cond",
            "flops",
            "synflow",
            "dss",
        ]:
            rows.setdefault(name, [f"{rho(a, name, 0)['spearman']:+.2f} (n={len(ids)})"])
            rows[name].append(f"{rho(b, name, 0)['spearman']:+.2f}")
    if lines:
        lines += [f"| {n} | " + " | ".join(v) + " |" for n, v in rows.items()]
        lines.append("")
    return lines


def blocks_table(space: str) -> list[str]:
    df = load(space, "default", blocks=True)
    if df is None or len(df) < 5:
        return []
    names = [p for p in proxies.VIT_PROXIES if p.startswith("blk_") and p in df]
    lines = [
        f"### {space}: per-block kernels, {len(df)} dev rows (ρ [CI], deciles)",
        "",
        "| proxy (sign) | ρ [CI], τ | deciles |",
        "|---|---|---|",
    ]
    for name in [*names, "ntk_eig_min", "ntk_trace", "params", "params_M"]:
        s = "+" if sign(name) > 0 else "−"
        lines.append(f"| {name} ({s}) | {fmt(rho(df, name))} | {within_deciles(df, name):+.2f} |")
    return [*lines, ""]


def main() -> int:
    out = ["## Size alone on every row of the file", "", *size_baselines(), ""]
    for space in vit_proxies.SPACES:
        out += space_tables(space)
        out += settings_table(space)
        out += blocks_table(space)
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
