"""Parameter counts of 3,003 AutoFormer-T/S/B subnets (OoD-ViT-NAS, ../shared/data/gt/), exactly.

Each row gives a subnet (embed dim, per-layer heads and MLP ratios) of the published AutoFormer
supernets and its parameter count in millions to 6 decimals, i.e. to the parameter. At 224x224,
patch 16, 1,000 classes the vit spaces must build networks of exactly that size.

Counts come from shapes only (``jax.eval_shape`` of ``init``). Tracing one network takes about a
second, so not every row is built: the count of a network is the sum of its blocks' counts and
of what lies outside the blocks, and both are read from built networks, one per (space, embed
dim) whose layers cover every (heads, ratio) choice. ``test_full_networks_add_up`` builds whole
rows to check that sum.
"""

import csv
import functools
import itertools
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from search_spaces import get_space

CSV = (
    Path(__file__).resolve().parents[2].parent
    / "shared/data/gt/oodvitnas_autoformer/autoformer_tsb_imagenet_supernet.csv"
)
SPACES = {"tiny": "vit-tiny", "small": "vit-small", "base": "vit-base"}
IMAGENET = (224, 224, 3)


@functools.lru_cache(maxsize=1)
def _rows():
    if not CSV.exists():
        pytest.skip(f"ground truth {CSV} is absent (it lives in ../shared, outside the repo)")
    with CSV.open() as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        config = {
            "embed_dim": int(r["embed_dim"]),
            "depth": int(r["depth"]),
            "heads": json.loads(r["num_heads"]),
            "mlp_ratio": json.loads(r["mlp_ratio"]),
        }
        # params_M has 6 decimals: millions to the single parameter
        out.append((SPACES[r["space"]], config, round(float(r["params_M"]) * 1e6)))
    return out


def _params(name, config):
    module = get_space(name).build(config, num_classes=1000, input_shape=IMAGENET)
    x = jax.ShapeDtypeStruct((1, *IMAGENET), jnp.float32)
    return jax.eval_shape(module.init, jax.random.PRNGKey(0), x)["params"]


def _size(tree):
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


@functools.cache
def _parts(name, embed):
    """(count outside the blocks, {(heads, ratio): count of one block}) for one embed dim."""
    c = get_space(name).choices
    pairs = list(itertools.product(c.heads, c.mlp_ratios))
    depth = min(d for d in c.depths if d >= len(pairs))
    layers = [pairs[i % len(pairs)] for i in range(depth)]
    config = {
        "embed_dim": embed,
        "depth": depth,
        "heads": [h for h, _ in layers],
        "mlp_ratio": [r for _, r in layers],
    }
    tree = _params(name, config)
    blocks = {pair: _size(tree[f"block_{i}"]) for i, pair in enumerate(layers)}
    outside = _size(tree) - sum(_size(tree[f"block_{i}"]) for i in range(depth))
    return outside, blocks


def _count_by_parts(name, config):
    outside, blocks = _parts(name, config["embed_dim"])
    return outside + sum(blocks[p] for p in zip(config["heads"], config["mlp_ratio"], strict=True))


def test_every_row_has_its_published_parameter_count():
    rows = _rows()
    assert len(rows) == 3003
    wrong = []
    for name, config, expected in rows:
        config = get_space(name).validate(config)  # every row lies in our space
        got = _count_by_parts(name, config)
        if got != expected:
            wrong.append((name, config["embed_dim"], config["depth"], got, expected))
    assert not wrong, f"{len(wrong)} rows differ (space, embed, depth, ours, file): {wrong[:5]}"


def test_full_networks_add_up():
    """Whole networks, built row by row: the smallest and the largest of each space."""
    rows = _rows()
    for name in SPACES.values():
        own = [r for r in rows if r[0] == name]
        for _, config, expected in (min(own, key=lambda r: r[2]), max(own, key=lambda r: r[2])):
            assert _size(_params(name, config)) == expected == _count_by_parts(name, config)
