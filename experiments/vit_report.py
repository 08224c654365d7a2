"""The tables of the ViT proxy study (experiments/vit_proxies.py): dev, the choice, then test.

Reads experiments/out/vit_<space>_<setting>[_blocks].csv and the ground truth. Every correlation
is Spearman ρ (and Kendall τ) of a proxy *read in its direction* with ImageNet top-1: the
proxy's values times its report sign (``+`` bigger is better: params, FLOPs, traces, λmin, DSS,
SynFlow, rank sums; ``-`` smaller is better: condition numbers), so a useful proxy has ρ > 0.
Intervals: 95% percentile bootstrap over architectures (1,000 resamples, seed 0).

Within budgets: ``deciles``: the mean of ρ within the ten parameter deciles (``params_M``,
AutoFormer's count at 224x224, patch 16, 1,000 classes) of the rows; ``budget``: ρ over the rows
inside AutoFormer's search budget for the space (T 5-6M, S 22-23M, B 42-54M).

The choice uses dev rows only: among the proxies ``ntknas search`` computes (its registry's
PROXIES, and where a ``--blocks`` run scored them the per-block ``blk_*`` proxies), each in either
direction (on ViTs several NTK reads rank the other way round from NB201), and TE-NAS rank sums of
two or three of the twelve best such terms, the one with the highest mean of the overall ρ and
the within-decile ρ on the dev sample; per-block proxies only where they gain at least
``BLOCK_MARGIN`` in that criterion. The test rows are then read once.

Usage:
  python experiments/vit_report.py > experiments/out/vit_report.md
"""

from __future__ import annotations

import glob
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
# Per-block proxies enter a default objective only if the best choice with them beats the best
# without them by this much in the criterion (they need the kernel per block; fixed before the
# 2026-12-03 dev runs were read).
BLOCK_MARGIN = 0.05
# The defaults shipped before that (chosen on the first runs' 88/70/39 dev rows), read beside them.
PREVIOUS = {
    "tiny": "rank(params:max+ntk_corr_cond:max+ntk_trace_per_param:min)",
    "small": "rank(ntk_eig_min:max+pntk_sum_trace:max)",
    "base": "rank(params:max+ntk_eff_rank:min)",
}


def sign(name: str) -> int:
    if (
        name.startswith("rank(")
        or name.endswith((":max", ":min"))
        or name in ("params_M", "flops_as_given")
    ):
        return 1
    return RECORDS[name].report_sign


def load(space: str, setting: str = "default", blocks: bool = False) -> pd.DataFrame | None:
    main = vit_proxies.out_path(space, setting, blocks)
    paths = [main, *sorted(glob.glob(main[: -len(".csv")] + ".*.csv"))]
    frames = [pd.read_csv(p) for p in paths if os.path.exists(p) and os.path.getsize(p) > 0]
    if not frames:
        return None
    df = pd.concat(frames, ignore_index=True)
    df = df[df["error"].isna() | (df["error"] == "")]
    return df.drop_duplicates("arch_id").reset_index(drop=True)


def load_all(space: str) -> pd.DataFrame | None:
    """The default setting's rows from the full-kernel and the per-block runs together (both
    hold the full kernel's proxies; a row scored by both is read from the full-kernel run)."""
    frames = [df for df in (load(space), load(space, blocks=True)) if df is not None]
    if not frames:
        return None
    df = pd.concat(frames, ignore_index=True)
    return df.drop_duplicates("arch_id").reset_index(drop=True)


def shipped(space: str) -> str:
    """The space's default objective as ntknas ships it (chosen on dev rows)."""
    from search_spaces import get_space

    return get_space(vit_proxies.SPACES[space]).default_objective


def column(df: pd.DataFrame, name: str) -> np.ndarray:
    """Oriented values (bigger = better) of a proxy, ``proxy:max``/``proxy:min`` (a direction
    given), or a rank sum ``rank(a+b+...)`` of those."""
    if name.endswith((":max", ":min")):
        proxy, _, direction = name.rpartition(":")
        return (1 if direction == "max" else -1) * df[proxy].to_numpy(dtype=np.float64)
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


def choose(dev: pd.DataFrame, pool: list[str], top: int = 12) -> list[tuple]:
    """Candidates scored on dev: (criterion, overall ρ, within-decile ρ, name), best first.

    Every proxy of ``pool`` in both directions (``:max``, ``:min``); the criterion is the mean
    of the overall and the within-decile ρ. Rank sums of two and three terms are formed from
    the ``top`` single terms (never a proxy twice).
    """

    def scored(name):
        overall = rho(dev, name, n_boot=0)["spearman"]
        deciles = within_deciles(dev, name)
        return ((overall + deciles) / 2, overall, deciles, name)

    def best_first(items):
        return sorted(items, key=lambda t: -np.nan_to_num(t[0], nan=-9))

    singles = best_first([scored(f"{p}:{d}") for p in pool for d in ("max", "min")])
    terms = [t[3] for t in singles[:top]]
    combos = [
        scored("rank(" + "+".join(c) + ")")
        for k in (2, 3)
        for c in itertools.combinations(terms, k)
        if len({t.rpartition(":")[0] for t in c}) == k
    ]
    return best_first([*singles, *combos])


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


def shown_proxies(df: pd.DataFrame) -> list[str]:
    """The proxies a table lists: the search's that were scored, the anchors, size as given."""
    scored = [p for p in proxies.PROXIES if p in df]
    return [*scored, "synflow", "dss", "params_M", "flops_as_given"]


def against_size(test: pd.DataFrame, name: str) -> str:
    """``name``'s test ρ against params' and FLOPs', and its margin over the better of them."""
    value = rho(test, name, n_boot=0)["spearman"]
    size = {p: rho(test, p, n_boot=0)["spearman"] for p in ("params", "flops")}
    return (
        f"{value:+.3f} vs params {size['params']:+.3f}, flops {size['flops']:+.3f} "
        f"(margin {value - max(size.values()):+.3f})"
    )


def space_tables(space: str) -> list[str]:
    df = load_all(space)
    if df is None or len(df) < 5:
        return [f"(too few scores for {space})"]
    dev, test = df[df.split == "dev"], df[df.split == "test"]
    if len(dev) < 5:
        return test_only_table(space, test)
    lines = [f"### {space}: default setting, {len(dev)} dev rows, {len(test)} test rows", ""]
    names = shown_proxies(df)
    picks = choose(dev, SEARCHABLE)
    best = picks[0][3]
    with_refs = choose(dev, [*SEARCHABLE, "synflow", "dss"])[0][3]
    block_pool = block_names(dev)
    with_blocks = None
    if block_pool:  # on the dev rows a per-block run scored
        dev_blocks = dev[dev[block_pool].notna().all(axis=1)]
        with_blocks = choose(dev_blocks, [*SEARCHABLE, *block_pool])
    size = max(("params", "flops"), key=lambda p: rho(dev, p, n_boot=0)["spearman"])
    extra = [] if with_blocks is None else [with_blocks[0][3]]
    default = shipped(space)
    shown = list(dict.fromkeys([*names, best, with_refs, *extra, PREVIOUS[space], default]))
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
        f"Choice on dev (proxies ntknas search computes): `{best}` "
        f"(dev: overall {picks[0][1]:+.3f}, deciles {picks[0][2]:+.3f}); next: "
        + "; ".join(f"`{p[3]}` {p[1]:+.3f}/{p[2]:+.3f}" for p in picks[1:6]),
        f"Best on dev with SynFlow/DSS allowed: `{with_refs}`.",
        *(
            []
            if with_blocks is None
            else [
                f"Best on dev with the per-block proxies allowed: `{with_blocks[0][3]}` "
                f"(dev: overall {with_blocks[0][1]:+.3f}, deciles {with_blocks[0][2]:+.3f}); "
                "next: " + "; ".join(f"`{p[3]}` {p[1]:+.3f}/{p[2]:+.3f}" for p in with_blocks[1:6])
            ]
        ),
        "",
        f"Margin of the choice over the better size proxy on dev ({size}): "
        f"{picks[0][1] - rho(dev, size, n_boot=0)['spearman']:+.3f}",
    ]
    inside = in_budget(df, space)
    lo, hi = BUDGETS[space]
    if len(inside):
        lines.append(
            f"AutoFormer's budget {lo / 1e6:g}-{hi / 1e6:g}M parameters at 224x224/16/1000 holds "
            f"{len(inside)} scored rows ({(inside.split == 'dev').sum()} dev); as scored "
            f"(32x32, patch 8, 10 logits) they have {inside.params.min() / 1e6:.2f}-"
            f"{inside.params.max() / 1e6:.2f}M parameters. "
        )
    delta = df.params_M * 1e6 - df.params
    lines.append(
        f"Parameters at 224/16/1000 minus as scored: {delta.min() / 1e6:.2f}-"
        f"{delta.max() / 1e6:.2f}M over the scored rows.\n"
    )
    if with_blocks is not None:
        gain = with_blocks[0][0] - picks[0][0]
        pick = with_blocks[0][3] if gain >= BLOCK_MARGIN else best
        lines.append(
            f"The rule (per-block proxies only if their choice beats the best without them by "
            f">= {BLOCK_MARGIN} in the criterion): gain {gain:+.3f}, so `{pick}`."
        )
    lines.append(f"Shipped default objective: `{default}`.")
    if len(test) >= 5:
        lines.append(f"Shipped objective on test: {against_size(test, default)}.")
        lines.append(f"Choice without per-block proxies on test: {against_size(test, best)}.")
    lines.append("")
    return lines


def test_only_table(space: str, test: pd.DataFrame) -> list[str]:
    """Test rows read with the shipped objective (no dev rows in this run to choose on)."""
    default = shipped(space)
    lines = [
        f"### {space}: default setting, {len(test)} test rows (no dev rows in this run; the "
        f"shipped objective `{default}` was chosen on an earlier run's dev rows)",
        "",
        "| proxy (sign) | test ρ [CI], τ | test deciles | test budget |",
        "|---|---|---|---|",
    ]
    for name in [*shown_proxies(test), default]:
        s = "+" if sign(name) > 0 else "−"
        lines.append(f"| {name} ({s}) | " + " | ".join(row_of(test, space, name)) + " |")
    return [*lines, "", f"Shipped objective on test {against_size(test, default)}.", ""]


def load_setting(space: str, setting: str) -> pd.DataFrame | None:
    """A setting's rows from its full-kernel run, else from its per-block run."""
    df = load(space, setting)
    return df if df is not None else load(space, setting, blocks=True)


def settings_table(space: str) -> list[str]:
    base = load_all(space)
    lines = []
    for setting in vit_proxies.SETTINGS:
        if setting == "default":
            continue
        other = load_setting(space, setting)
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
                    s
                    for s in vit_proxies.SETTINGS
                    if s != "default" and load_setting(space, s) is not None
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
            *[p for p in ("blk_head_share", "blk_attention_share") if p in a and p in b],
            shipped(space),
        ]:
            rows.setdefault(name, [f"{rho(a, name, 0)['spearman']:+.2f} (n={len(ids)})"])
            rows[name].append(f"{rho(b, name, 0)['spearman']:+.2f}")
    if lines:
        lines += [f"| {n} | " + " | ".join(v) + " |" for n, v in rows.items()]
        lines.append("")
    return lines


def block_names(df: pd.DataFrame) -> list[str]:
    """The per-block proxies scored in ``df`` (rows of a ``--blocks`` run have them)."""
    return [
        p for p in proxies.VIT_PROXIES if p.startswith("blk_") and p in df and df[p].notna().any()
    ]


def blocks_table(space: str) -> list[str]:
    df = load(space, "default", blocks=True)
    if df is None or len(df) < 5:
        return []
    names = block_names(df)
    lines = []
    for split in ("dev", "test"):
        part = df[df.split == split]
        if len(part) < 5:
            continue
        lines += [
            f"### {space}: per-block kernels, {len(part)} {split} rows (ρ [CI], deciles)",
            "",
            "| proxy (sign) | ρ [CI], τ | deciles |",
            "|---|---|---|",
        ]
        for name in [*names, "ntk_eig_min", "ntk_trace", "params", "params_M", shipped(space)]:
            s = "+" if sign(name) > 0 else "−"
            r = fmt(rho(part, name))
            lines.append(f"| {name} ({s}) | {r} | {within_deciles(part, name):+.2f} |")
        lines.append("")
    return lines


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
