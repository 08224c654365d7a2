"""Study: which training-free proxy ranks NAS-Bench-201 cells like their trained accuracy?

Scores a seeded sample of ../shared/data/nb201_val_acc_sample1000.csv with every proxy of
``ntknas compare`` (full and pseudo NTK, normalized NTK reads, params, FLOPs, NASWOT, SynFlow),
for each setting (data x BatchNorm mode). Cells are the outer loop and settings the inner one, so
a cell's kernel compiles once per BatchNorm mode; ``--shard K/N`` splits the cells over N
processes. Each process appends its rows to experiments/out/nb201_<setting>.part<K>ofN.csv as they
come (a rerun skips cells already scored); the report merges the parts and writes the correlation
tables. ``--holdout K`` scores K other cells of the file (nb201holdout_* files) to check a choice
made on the sample.

Usage:
  python experiments/nb201_proxies.py --samples 200 --shard 0/2 &
  python experiments/nb201_proxies.py --samples 200 --shard 1/2 &
  wait; python experiments/nb201_proxies.py --report-only
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time

import jax

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
jax.config.update("jax_enable_x64", True)  # SynFlow overflows float32; kernels stay float32

import pandas as pd  # noqa: E402

from ntknas import compare  # noqa: E402
from ntknas.proxies import PROXIES  # noqa: E402
from ntknas.scoring import ScoreOptions, Scorer  # noqa: E402
from search_spaces import get_space  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TRUTH = os.path.join(HERE, "..", "..", "shared", "data", "nb201_val_acc_sample1000.csv")
OUT = os.path.join(HERE, "out")
COLUMNS = [
    "cell",
    "setting",
    "config",
    "description",
    *PROXIES,
    *compare.REFERENCE_PROXIES,
    *compare.SECONDS_COLUMNS,
    "compile_seconds",
    "method",
    "error",
]
SETTINGS = ("gaussian:eval", "digits:eval", "gaussian:train", "digits:train")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--sample-seed", type=int, default=0)
    p.add_argument("--settings", nargs="+", default=list(SETTINGS))
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--input-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--naswot-batch", type=int, default=32)
    p.add_argument(
        "--method",
        default="jacobian_contraction",
        help="NTK method (every method gives the same kernel; on one nb201 cell at N=4, 16x16, "
        "Jacobian contraction compiles in 4-13 s where structured derivatives take 13-36 s)",
    )
    p.add_argument(
        "--shard",
        default="0/1",
        help="K/N: score every N-th sampled cell from the K-th, into its own part file, so N "
        "processes can share the work (XLA compiles on one core)",
    )
    p.add_argument(
        "--holdout",
        type=int,
        default=0,
        help="score this many other cells instead (outside the --samples sample, seeded by "
        "--sample-seed + 1), into nb201holdout_* files: a check of choices made on the sample",
    )
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args()
    os.makedirs(OUT, exist_ok=True)
    truth = pd.read_csv(TRUTH, dtype={"op_indices": str})
    sample = truth.sample(n=args.samples, random_state=args.sample_seed)
    if args.holdout:
        rest = truth.drop(index=sample.index)
        sample = rest.sample(n=args.holdout, random_state=args.sample_seed + 1)
    if not args.report_only:
        _run(sample["op_indices"].tolist(), args)
    for setting in args.settings:
        _report(setting, args)
    return 0


def path(setting, batch, size, holdout=False, shard=None) -> str:
    """The merged CSV of a setting, or with ``shard`` ("K/N") the part file of one process."""
    data, bn = setting.split(":")
    prefix = "nb201holdout" if holdout else "nb201"
    base = os.path.join(OUT, f"{prefix}_{data}_{bn}_b{batch}_s{size}")
    return base + (f".part{shard.replace('/', 'of')}.csv" if shard else ".csv")


def read_scores(setting, batch, size, holdout=False):
    """Every part file of a setting, one row per cell (None when there is none yet)."""
    paths = sorted(glob.glob(path(setting, batch, size, holdout)[: -len(".csv")] + ".part*.csv"))
    if not paths:
        return None
    frames = [pd.read_csv(p, dtype={"cell": str}) for p in paths]
    return pd.concat(frames, ignore_index=True).drop_duplicates("cell", keep="last")


def with_truth(df):
    """The cells scored without error, joined with their trained accuracies."""
    truth = pd.read_csv(TRUTH, dtype={"op_indices": str})
    ok = df["error"].isna() | (df["error"].astype(str) == "")
    return df[ok].merge(truth, left_on="cell", right_on="op_indices")


def _path(setting, args, shard=None) -> str:
    return path(setting, args.batch, args.input_size, args.holdout, shard)


def _report(setting, args) -> None:
    """Correlations with the three data sets' accuracies: experiments/out/<setting>/summary.md."""
    from ntknas.compare._report import write_report

    df = read_scores(setting, args.batch, args.input_size, args.holdout)
    if df is None:
        print(f"{setting}: no scores yet ({_path(setting, args)})")
        return
    df.to_csv(_path(setting, args), index=False)
    df = with_truth(df)
    metrics = ["val_acc_cifar10", "val_acc_cifar100", "val_acc_ImageNet16-120"]
    out = _path(setting, args)[: -len(".csv")]
    title = f"NAS-Bench-201, {setting}, batch {args.batch}, {args.input_size}x{args.input_size}"
    result = write_report(df, out, metrics, title=f"{title}, {len(df)} cells")
    print(result["summary"])


def _run(cells, args) -> None:
    """Cells outside, settings inside: a cell's kernel compiles once per BatchNorm mode and
    serves both data sets; a rerun skips what the part file already has."""
    k, n = (int(v) for v in args.shard.split("/"))
    cells = cells[k::n]
    settings = sorted(args.settings, key=lambda s: s.split(":")[::-1])  # group by BatchNorm
    paths = {s: _path(s, args, args.shard) for s in settings}
    done = {
        s: set(pd.read_csv(p, dtype=str)["cell"]) if os.path.exists(p) else set()
        for s, p in paths.items()
    }
    space = get_space("nb201")
    proxies = compare.ProxyScorer(Scorer(max_models=4), naswot_batch=args.naswot_batch)
    start = time.perf_counter()
    for i, cell in enumerate(cells):
        for setting in settings:
            if cell in done[setting]:
                continue
            data, bn = setting.split(":")
            options = ScoreOptions(
                batch=args.batch,
                seed=args.seed,
                data=data,
                bn=bn,
                input_shape=(args.input_size, args.input_size, 3),
                method=args.method,
            )
            row = proxies.score_row(space, {"cell": cell}, options, time_costs=i < 3)
            row = dict(row, cell=cell, setting=setting)
            path = paths[setting]
            # fixed columns: rows with and without the timed-cost columns line up in one file
            pd.DataFrame([row]).reindex(columns=COLUMNS).to_csv(
                path, mode="a", header=not os.path.exists(path), index=False
            )
        rate = (time.perf_counter() - start) / (i + 1)
        print(f"{args.shard} {i + 1}/{len(cells)} {cell} {rate:.1f} s/cell", flush=True)


if __name__ == "__main__":
    sys.exit(main())
