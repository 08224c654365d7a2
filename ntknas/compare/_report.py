"""Tables, markdown and plots of a comparison: correlations with ground truth, agreement, cost."""

from __future__ import annotations

import os

import numpy as np

from .. import proxies
from ._scores import SECONDS_COLUMNS
from ._stats import rank_correlation, top_k_overlap

# Rank-sum combinations (TE-NAS style: each proxy ranked in its own direction, ranks added), in
# the objective's syntax; a proxy without a direction is read in its report direction
# (ntknas.proxies.Proxy.report_direction). NASWOT counts activation patterns, the stand-in here
# for TE-NAS's number of linear regions.
COMBINATIONS = (
    "rank(ntk_cond+naswot)",
    "rank(ntk_corr_cond+naswot)",
    "rank(ntk_cond+params)",
    "rank(ntk_trace_per_param+params)",
    "rank(naswot+synflow)",
    "rank(naswot+params)",
    "rank(ntk_corr_cond+naswot+synflow)",
    # the search's default objective (experiments/README.md: best of the kernel-only rank sums)
    "rank(ntk_eig_min+ntk_eff_rank+flops)",
)


def combination_terms(name: str) -> tuple[proxies.Term, ...]:
    """The proxies of a rank sum and the directions a report reads them in."""
    terms, _ = proxies.parse_terms(name, registry=proxies.REGISTRY, report=True)
    return terms


def sign(name: str) -> int:
    """+1 if a higher value predicts a better architecture, -1 if lower does.

    A proxy's report sign (:attr:`ntknas.proxies.Proxy.report_sign`); rank sums are higher =
    better.
    """
    if name.startswith("rank("):
        return 1
    return proxies.REGISTRY[name].report_sign


def proxy_columns(df) -> list[str]:
    """The proxy columns present in a scores frame, registry order, then combinations."""
    names = [*proxies.REGISTRY, *COMBINATIONS]
    return [n for n in names if n in df.columns and df[n].notna().any()]


def add_combinations(df):
    """``df`` with a column per :data:`COMBINATIONS` entry whose proxies are all present."""
    df = df.copy()
    for name in COMBINATIONS:
        terms = combination_terms(name)
        if all(t.proxy in df.columns and df[t.proxy].notna().any() for t in terms):
            df[name] = proxies.rank_sum_of(df, terms)
    return df


def correlation_table(df, metrics, *, n_boot=1000, seed=0):
    """One row per (metric, proxy): Spearman and Kendall with CIs, raw and in the proxy's sign."""
    import pandas as pd

    rows = []
    for metric in metrics:
        y = df[metric].to_numpy(dtype=np.float64)
        for name in proxy_columns(df):
            r = rank_correlation(df[name].to_numpy(dtype=np.float64), y, n_boot=n_boot, seed=seed)
            rows.append({"metric": metric, "proxy": name, "sign": sign(name), **r})
    table = pd.DataFrame(rows)
    if len(table):
        table["oriented_spearman"] = table["sign"] * table["spearman"]
    return table


def agreement_table(df, pairs=None, k: int = 10):
    """Spearman between proxies and the share of one's top-k in the other's (their own signs)."""
    import pandas as pd

    from ._stats import rank_correlation as rc

    if pairs is None:
        names = [n for n in proxy_columns(df) if n.startswith("pntk_") and n.endswith("_cond")]
        pairs = [("ntk_cond", n) for n in names] + [
            ("ntk_trace", n.replace("_cond", "_trace")) for n in names
        ]
        pairs += [("ntk_cond", "naswot"), ("ntk_cond", "params"), ("naswot", "params")]
        pairs = [(a, b) for a, b in pairs if a in df.columns and b in df.columns]
    rows = []
    for a, b in pairs:
        va, vb = df[a].to_numpy(dtype=np.float64), df[b].to_numpy(dtype=np.float64)
        rho = rc(va, vb, n_boot=0)["spearman"]
        overlap = top_k_overlap(va, vb, k, sign(a) > 0, sign(b) > 0)
        rows.append({"a": a, "b": b, "spearman": rho, f"top{k}_overlap": overlap})
    return pd.DataFrame(rows)


def seconds_table(df):
    """Median and total seconds per architecture of each proxy group present in ``df``."""
    import pandas as pd

    rows = []
    for col, what in SECONDS_COLUMNS.items():
        if col in df.columns and df[col].notna().any():
            s = df[col].dropna()
            rows.append({"proxies": col[len("seconds_") :], "median_s": s.median(), "what": what})
    if "compile_seconds" in df.columns:
        c = df["compile_seconds"].fillna(0)
        c = c[c > 0]  # rows that reused a compiled kernel spent nothing here
        if len(c):
            what = f"per compiled kernel: {len(c)} compiles, {c.sum():.0f} s in all"
            rows.append({"proxies": "ntk compile", "median_s": c.median(), "what": what})
    return pd.DataFrame(rows)


def _fmt(v, lo=None, hi=None) -> str:
    if v is None or not np.isfinite(v):
        return "n/a"
    if lo is None or not np.isfinite(lo):
        return f"{v:+.3f}"
    return f"{v:+.3f} [{lo:+.2f}, {hi:+.2f}]"


def markdown(corr, agree, seconds, *, title: str = "Proxy comparison") -> str:
    """The summary as markdown: correlations per metric (best first), agreement, cost."""
    lines = [f"# {title}", ""]
    lines.append(
        "Sign convention: correlations are raw (proxy value vs metric). `sign` is +1 if a higher "
        "value is taken to predict higher accuracy, -1 if lower does (lower condition number = "
        "better); `oriented` = sign x Spearman, so a useful proxy has oriented > 0. Intervals: "
        "95% percentile bootstrap over architectures."
    )
    for metric, t in corr.groupby("metric", sort=False) if len(corr) else []:
        t = t.sort_values("oriented_spearman", ascending=False)
        lines += ["", f"## vs `{metric}` (n = {int(t['n'].max())})", ""]
        lines.append("| proxy | sign | Spearman ρ [95% CI] | Kendall τ [95% CI] | oriented ρ |")
        lines.append("|---|---|---|---|---|")
        for r in t.itertuples():
            lines.append(
                f"| {r.proxy} | {r.sign:+d} | {_fmt(r.spearman, r.spearman_lo, r.spearman_hi)} "
                f"| {_fmt(r.kendall, r.kendall_lo, r.kendall_hi)} | {_fmt(r.oriented_spearman)} |"
            )
    if len(agree):
        k = [c for c in agree.columns if c.startswith("top")][0]
        lines += ["", "## Agreement between proxies", "", f"| a | b | Spearman | {k} |"]
        lines.append("|---|---|---|---|")
        for r in agree.itertuples(index=False):
            lines.append(f"| {r[0]} | {r[1]} | {_fmt(r[2])} | {r[3]:.2f} |")
    if len(seconds):
        lines += ["", "## Cost per architecture (median seconds)", "", "| proxies | s | what |"]
        lines.append("|---|---|---|")
        for r in seconds.itertuples(index=False):
            lines.append(f"| {r.proxies} | {r.median_s:.3g} | {r.what} |")
    return "\n".join(lines) + "\n"


def plot_scatter(df, metric: str, path: str, names=None) -> str:
    """A grid of proxy-vs-metric scatter plots (log x where a proxy spans decades)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = names or proxy_columns(df)
    cols = 4
    rows = max(1, -(-len(names) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    y = df[metric].to_numpy(dtype=np.float64)
    for ax, name in zip(axes.flat, names, strict=False):
        x = df[name].to_numpy(dtype=np.float64)
        ok = np.isfinite(x) & np.isfinite(y)
        ax.scatter(x[ok], y[ok], s=6, alpha=0.6)
        if ok.any() and np.all(x[ok] > 0) and x[ok].max() > 100 * x[ok].min():
            ax.set_xscale("log")
        ax.set_title(name, fontsize=9)
        ax.set_ylabel(metric, fontsize=8)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def plot_bars(corr, metric: str, path: str) -> str:
    """Oriented Spearman per proxy with its bootstrap interval, best on top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = corr[corr["metric"] == metric].sort_values("oriented_spearman")
    s = t["sign"].to_numpy()
    lo = np.minimum(s * t["spearman_lo"], s * t["spearman_hi"])
    hi = np.maximum(s * t["spearman_lo"], s * t["spearman_hi"])
    mid = t["oriented_spearman"].to_numpy()
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(t) + 1.2))
    ax.barh(t["proxy"], mid, color=["C0" if v > 0 else "C3" for v in mid])
    # the interval as a segment: a percentile bootstrap interval need not contain the estimate
    ok = np.isfinite(lo) & np.isfinite(hi)
    ax.hlines(np.arange(len(t))[ok], lo[ok], hi[ok], color="k", lw=1)
    ax.axvline(0, color="k", lw=0.5)
    ax.set_xlabel(f"oriented Spearman ρ vs {metric} (95% bootstrap CI)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def write_report(df, out_dir: str, metrics=(), *, n_boot=1000, seed=0, title=None) -> dict:
    """Writes scores.csv, correlations.csv, agreement.csv, summary.md and PNG plots.

    Returns:
      ``{"summary": markdown text, "files": [paths written]}``.
    """
    os.makedirs(out_dir, exist_ok=True)
    df = add_combinations(df)
    files = [os.path.join(out_dir, "scores.csv")]
    df.to_csv(files[0], index=False)
    corr = correlation_table(df, metrics, n_boot=n_boot, seed=seed)
    agree = agreement_table(df)
    seconds = seconds_table(df)
    for name, t in (("correlations", corr), ("agreement", agree), ("seconds", seconds)):
        if len(t):
            files.append(os.path.join(out_dir, f"{name}.csv"))
            t.to_csv(files[-1], index=False)
    text = markdown(corr, agree, seconds, title=title or "Proxy comparison")
    files.append(os.path.join(out_dir, "summary.md"))
    with open(files[-1], "w") as fh:
        fh.write(text)
    for metric in metrics:
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in metric)
        files.append(plot_scatter(df, metric, os.path.join(out_dir, f"scatter_{safe}.png")))
        files.append(plot_bars(corr, metric, os.path.join(out_dir, f"correlations_{safe}.png")))
    return {"summary": text, "files": files, "correlations": corr, "scores": df}
