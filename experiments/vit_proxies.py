"""Study: which training-free proxy ranks AutoFormer subnets like their ImageNet accuracy?

Scores rows of ../shared/data/gt/oodvitnas_autoformer/autoformer_tsb_imagenet_supernet.csv
(AutoFormer-T/S/B subnets, ImageNet top-1 with weights inherited from the supernets) with every
proxy the tool has that applies to ViTs: the full O×O NTK (cond, trace, eig_min, eig_max, its
normalized reads), the three pseudo-NTKs, params and FLOPs (of the network as scored), SynFlow,
TF-TAS's DSS, and the per-block kernels (attention, MLP, embedding, head, norm). NASWOT does not
apply: the networks have GELUs, which sow no ReLU codes.

Every candidate goes through its space's shared masked graph (one compiled program per space and
setting, ntknas.scoring.Scorer's shared path), so a candidate costs its initialization, its
kernel, DSS and SynFlow on the graph, and the shape-only parameter count and FLOPs of its own
network. ``--blocks`` takes the five block kernels from one blocked program instead (the full
kernel is their sum); it costs several times the full kernel, so it runs on a small sample.
Rows are appended to experiments/out/vit_<space>_<setting>.csv as they come; a rerun skips rows
already scored.

Settings (name: input size, data, batch; 10 logits; the patch the space picks):
  default: 32x32 (patch 8), gaussian, batch 4 (ntknas search's defaults)
  digits:  32x32, the 8x8 digits of scikit-learn, batch 4
  batch8:  32x32, gaussian, batch 8
  size64:  64x64 (patch 16, AutoFormer's patch; the same 4x4 grid), gaussian, batch 4

Usage:
  python experiments/vit_proxies.py --space tiny --split test
  python experiments/vit_proxies.py --space tiny --split dev --samples 60
  python experiments/vit_proxies.py --space tiny --split dev --samples 20 --setting digits
  python experiments/vit_report.py           # the tables (experiments/vit_report.py)
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time

import jax

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
jax.config.update("jax_enable_x64", True)  # SynFlow and DSS overflow float32; kernels stay float32

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from ntknas import data, ntk, proxies  # noqa: E402
from ntknas.proxies import dss, synflow  # noqa: E402
from ntknas.proxies.blocks import block_proxies  # noqa: E402
from ntknas.scoring import ScoreOptions, Scorer  # noqa: E402
from search_spaces import get_space  # noqa: E402
from search_spaces.vit import param_block as vit_block  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
GT = os.path.join(HERE, "..", "..", "shared", "data", "gt")
TRUTH = os.path.join(GT, "oodvitnas_autoformer", "autoformer_tsb_imagenet_supernet.csv")
OUT = os.path.join(HERE, "out")
SPACES = {"tiny": "vit-tiny", "small": "vit-small", "base": "vit-base"}
SETTINGS = {
    "default": {"size": 32, "data": "gaussian", "batch": 4},
    "digits": {"size": 32, "data": "digits", "batch": 4},
    "batch8": {"size": 32, "data": "gaussian", "batch": 8},
    "size64": {"size": 64, "data": "gaussian", "batch": 4},
}
NUM_CLASSES = 10
TRUTH_COLUMNS = ["arch_id", "split", "params_M", "flops_as_given", "imagenet_val_top1_supernet"]
PROXY_COLUMNS = [
    *proxies.PROXIES,
    "synflow",
    *proxies.VIT_PROXIES,
]
TIME_COLUMNS = ["seconds_kernel", "seconds_dss_synflow"]


def truth_rows(space: str) -> list[dict]:
    """The file's rows of one space, each with its config."""
    with open(TRUTH) as f:
        rows = [r for r in csv.DictReader(f) if r["space"] == space]
    for r in rows:
        r["config"] = {
            "embed_dim": int(r["embed_dim"]),
            "depth": int(r["depth"]),
            "heads": json.loads(r["num_heads"]),
            "mlp_ratio": json.loads(r["mlp_ratio"]),
        }
    return rows


def pick(rows: list[dict], split: str, samples: int | None, seed: int) -> list[dict]:
    """The rows of ``split`` (all, or ``samples`` of them) in a seeded random order, so that a
    run stopped early has scored a random subset."""
    rows = [r for r in rows if r["split"] == split]
    order = np.random.default_rng(seed).permutation(len(rows))
    return [rows[i] for i in order[: samples or len(rows)]]


class GraphScorer:
    """Every ViT proxy of a config of one space and setting, through the space's masked graph.

    Without ``blocks``: the full kernel, params and FLOPs from :class:`ntknas.scoring.Scorer`
    (every config through the shared graph, compiled once), DSS and SynFlow on the graph. With
    ``blocks``: the five block kernels from one blocked program (``param_blocks=vit_block``),
    the full kernel their sum, and the per-block proxies too.
    """

    def __init__(self, space_name: str, setting: dict, seed: int, method: str, blocks: bool):
        self.space = get_space(space_name)
        shape = (setting["size"], setting["size"], 3)
        self.options = ScoreOptions(
            batch=setting["batch"],
            seed=seed,
            data=setting["data"],
            num_classes=NUM_CLASSES,
            input_shape=shape,
            bn="train",
            method=method,
        )
        self.graph = self.space.shared_graph(NUM_CLASSES, shape)
        self.key = jax.random.PRNGKey(seed)
        x = data.load_batch(setting["data"], setting["batch"], shape, seed)
        self.x = jnp.asarray(x, jnp.float32)
        module = self.graph.module

        def f(params, xs):
            inputs, arch = xs
            return module.apply({"params": params}, inputs, arch)

        # examples are independent (LayerNorm only); the architecture is shared by all
        self.kernel_fn = ntk.ntk_fn(
            f, method=method, vmap_axes=((0, None), 0), param_blocks=vit_block
        )
        self.blocks = blocks
        self.dss = dss.dss_fn(module, shape)
        self.synflow = synflow.synflow_fn(module, shape)
        self.scorer = Scorer(shared_graphs=True, shared_flops_max=math.inf)

    def score(self, config: dict) -> dict:
        config = self.space.validate(config)
        arch = jnp.asarray(self.graph.encode(config), jnp.float32)
        variables = self.graph.init_own(self.key, self.x[:1], config)
        t0 = time.perf_counter()
        if self.blocks:
            params = jax.tree.map(lambda a: a.astype(jnp.float32), variables["params"])
            kernels = jax.block_until_ready(self.kernel_fn((self.x, arch), None, params))
            kernels = {k: np.asarray(v) for k, v in kernels.items()}
            n_params = self.scorer.count_params(self.space, config, self.options)
            row = proxies.kernel_proxies(sum(kernels.values()), n_params)
            row.update(block_proxies(kernels))
            row["params"] = n_params
            row["flops"] = self.scorer.own_flops(self.space, config, self.options)
        else:
            s = self.scorer.score(self.space, config, self.options)
            assert s.path == "shared", s.path
            row = {name: s[name] for name in proxies.PROXIES}
        t1 = time.perf_counter()
        p64 = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])
        row["dss"] = self.dss(p64, {}, np.asarray(arch, np.float64))
        row["synflow"] = self.synflow(p64, {}, np.asarray(arch, np.float64))
        row.update(seconds_kernel=t1 - t0, seconds_dss_synflow=time.perf_counter() - t1)
        return row


def out_path(space: str, setting: str, blocks: bool = False, part: str = "") -> str:
    """The scores file; ``part``: a file of its own for a second process of the same setting."""
    name = f"vit_{space}_{setting}{'_blocks' if blocks else ''}{'.' + part if part else ''}.csv"
    return os.path.join(OUT, name)


def done_ids(path: str) -> set[str]:
    if not os.path.exists(path):
        return set()
    with open(path) as f:
        return {r["arch_id"] for r in csv.DictReader(f)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", choices=SPACES, required=True)
    p.add_argument("--split", choices=("dev", "test"), required=True)
    p.add_argument("--samples", type=int, default=None, help="seeded sample of the split's rows")
    p.add_argument("--sample-seed", type=int, default=0)
    p.add_argument("--setting", choices=SETTINGS, default="default")
    p.add_argument("--seed", type=int, default=0, help="initialization and data")
    p.add_argument("--method", default="structured_derivatives")
    p.add_argument("--limit", type=int, default=None, help="score at most this many new rows")
    p.add_argument(
        "--blocks",
        action="store_true",
        help="per-block kernels too (one blocked program; to vit_<space>_<setting>_blocks.csv)",
    )
    p.add_argument("--offset", type=int, default=0, help="start at this row of the order")
    p.add_argument("--part", default="", help="write to vit_<space>_<setting>.<PART>.csv")
    args = p.parse_args()

    rows = pick(truth_rows(args.space), args.split, args.samples, args.sample_seed)[args.offset :]
    path = out_path(args.space, args.setting, args.blocks, args.part)
    done = done_ids(path)
    todo = [r for r in rows if r["arch_id"] not in done][: args.limit]
    print(f"{args.space} {args.setting} {args.split}: {len(rows)} rows, {len(todo)} to score")
    if not todo:
        return 0
    os.makedirs(OUT, exist_ok=True)
    t0 = time.perf_counter()
    scorer = GraphScorer(
        SPACES[args.space], SETTINGS[args.setting], args.seed, args.method, args.blocks
    )
    columns = [*TRUTH_COLUMNS, *PROXY_COLUMNS, *TIME_COLUMNS, "error"]
    new = not os.path.exists(path)
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, columns, extrasaction="ignore")
        if new:
            w.writeheader()
        for i, r in enumerate(todo):
            t = time.perf_counter()
            try:
                row = scorer.score(r["config"])
                row["error"] = ""
            except Exception as e:  # a failing row is recorded, the others go on
                row = {"error": f"{type(e).__name__}: {e}"}
            w.writerow({**{c: r[c] for c in TRUTH_COLUMNS}, **row})
            f.flush()
            print(
                f"[{i + 1}/{len(todo)}] {r['arch_id']} {time.perf_counter() - t:.1f}s "
                f"(total {time.perf_counter() - t0:.0f}s) {row.get('error', '')}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
