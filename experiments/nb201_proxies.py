"""Study: which training-free proxy ranks NAS-Bench-201 cells like their trained accuracy?

Scores a seeded sample of ../shared/data/nb201_val_acc_sample1000.csv with every proxy of
``ntknas compare`` (full and pseudo NTK, normalized NTK reads, params, FLOPs, NASWOT, SynFlow),
for each setting (data x BatchNorm mode), appending rows to experiments/out/nb201_<setting>.csv as
they come (a rerun skips cells already scored), then writes the correlation tables.

Usage:
  python experiments/nb201_proxies.py --samples 200 --settings gaussian:train digits:train \\
      gaussian:eval digits:eval --batch 4 --input-size 16
  python experiments/nb201_proxies.py --report-only   # tables from the CSVs already there
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
jax.config.update("jax_enable_x64", True)  # SynFlow overflows float32; kernels stay float32

import pandas as pd  # noqa: E402

from ntknas import compare  # noqa: E402
from ntknas.scoring import ScoreOptions  # noqa: E402
from search_spaces import get_space  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TRUTH = os.path.join(HERE, "..", "..", "shared", "data", "nb201_val_acc_sample1000.csv")
OUT = os.path.join(HERE, "out")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--sample-seed", type=int, default=0)
    p.add_argument("--settings", nargs="+", default=["gaussian:train", "digits:train"])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--input-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--naswot-batch", type=int, default=32)
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args()
    os.makedirs(OUT, exist_ok=True)
    truth = pd.read_csv(TRUTH, dtype={"op_indices": str})
    sample = truth.sample(n=args.samples, random_state=args.sample_seed)
    space = get_space("nb201")
    for setting in args.settings:
        if not args.report_only:
            _run(space, sample, setting, args)
        _report(truth, setting, args)
    return 0


def _path(setting, args) -> str:
    data, bn = setting.split(":")
    return os.path.join(OUT, f"nb201_{data}_{bn}_b{args.batch}_s{args.input_size}.csv")


def _report(truth, setting, args) -> None:
    """Correlations with the three data sets' accuracies: experiments/out/<setting>/summary.md."""
    from ntknas.compare._report import write_report

    path = _path(setting, args)
    if not os.path.exists(path):
        print(f"{setting}: no scores yet ({path})")
        return
    df = pd.read_csv(path, dtype={"cell": str}).drop_duplicates("cell")
    df = df[df["error"].fillna("") == ""].merge(truth, left_on="cell", right_on="op_indices")
    metrics = ["val_acc_cifar10", "val_acc_cifar100", "val_acc_ImageNet16-120"]
    out = os.path.join(OUT, os.path.basename(path)[: -len(".csv")])
    title = f"NAS-Bench-201, {setting}, batch {args.batch}, {args.input_size}x{args.input_size}"
    result = write_report(df, out, metrics, title=f"{title}, {len(df)} cells")
    print(result["summary"])


def _run(space, sample, setting, args) -> None:
    data, bn = setting.split(":")
    path = _path(setting, args)
    done = set(pd.read_csv(path, dtype=str)["cell"]) if os.path.exists(path) else set()
    cells = [c for c in sample["op_indices"] if c not in done]
    options = ScoreOptions(
        batch=args.batch,
        seed=args.seed,
        data=data,
        bn=bn,
        input_shape=(args.input_size, args.input_size, 3),
    )
    start = time.perf_counter()

    def on_row(i, row):
        row = dict(row, cell=cells[i], setting=setting)
        pd.DataFrame([row]).to_csv(path, mode="a", header=not os.path.exists(path), index=False)
        rate = (time.perf_counter() - start) / (i + 1)
        print(
            f"{setting} {i + 1}/{len(cells)} {cells[i]} {rate:.2f} s/cell {row['error']}",
            flush=True,
        )

    compare.score_all(
        space, [{"cell": c} for c in cells], options, naswot_batch=args.naswot_batch, on_row=on_row
    )


if __name__ == "__main__":
    sys.exit(main())
