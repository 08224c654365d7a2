"""Vision Transformer spaces of AutoFormer (Chen et al., 2021; microsoft/Cream, AutoFormer).

``vit-tiny``, ``vit-small`` and ``vit-base`` are the AutoFormer-T, -S and -B spaces: one embedding
dimension and one depth per network, and per layer a number of heads and an MLP ratio.

The network is the one AutoFormer's public model code builds for its published supernets (run
with ``--change_qkv --relative_position --gp``; see :mod:`._autoformer_layers`):

- patch embedding by a stride-``p`` conv, a class token, a learned absolute position embedding;
- pre-norm blocks ``x += Attn(LN(x)); x += MLP(LN(x))`` (LayerNorm eps 1e-5);
- attention with heads 64 wide whatever the embedding dimension (qkv width ``64 * heads``, with
  bias; output projection ``64 * heads -> D``) and 2-D relative position embeddings on the keys
  and on the values (one vertical and one horizontal table each, shared by the heads; distances
  clipped at 14, and at the grid's side on smaller grids);
- MLP ``D -> int(D * ratio) -> D`` with exact GELU;
- a final LayerNorm and a linear head on the mean of the patch tokens (not on the class token).

Initialization as in the original: normal (std 0.02) for the linear layers, the class token, the
position embedding and the relative-position tables, zero biases, PyTorch's default for the patch
conv. At 224x224, patch 16 and 1,000 classes the parameter counts equal those OoD-ViT-NAS lists
for 3,003 subnets of the AutoFormer supernets (``tests/search_spaces/test_vit_golden.py``).

``"variant": "autoprox"`` in a config builds Auto-Prox's AutoFormer subnet instead (the networks
of ViT-Bench-101): qkv width equal to the embedding dimension (head width ``D / heads``, so every
layer's heads must divide D), no relative positions, LayerNorm eps 1e-6, the rest as above.

Patch size: a config may name one (``"patch_size": 16``); otherwise ``default_patch_size`` picks
the largest of 16, 8, 4, 2, 1 that divides H and W and leaves a grid of at least 4x4 patches:
patch 16 on 224x224 (a 14x14 grid, AutoFormer's setting), patch 8 on the default 32x32 scoring
input (a 4x4 grid, so attention still mixes 17 tokens rather than 5).

Example:
  >>> space = get_space("vit-small")
  >>> module = space.build({"embed_dim": 384, "depth": 12, "heads": [6] * 12,
  ...                       "mlp_ratio": [4.0] * 12})      # 32x32x3 -> 10 logits, patch 8
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from typing import ClassVar

from ._autoformer_layers import VARIANTS, VisionTransformer
from ._base import (
    Config,
    SearchSpace,
    SharedGraph,
    check_choice,
    check_fields,
    check_int,
    check_list,
    check_mapping,
    gather_layers,
    register,
    run_length,
)
from ._vit_masked import SharedViT, encoder, vit_graph

DEFAULT_VARIANT = "autoformer"
_PATCH_CANDIDATES = (16, 8, 4, 2, 1)
_MIN_GRID = 4


def default_patch_size(height: int, width: int) -> int:
    """The largest of 16, 8, 4, 2, 1 dividing H and W that leaves at least a 4x4 patch grid."""
    for p in _PATCH_CANDIDATES:
        if height % p == 0 and width % p == 0 and min(height, width) // p >= _MIN_GRID:
            return p
    return 1


@dataclasses.dataclass(frozen=True)
class _Choices:
    embed_dims: tuple[int, ...]
    depths: tuple[int, ...]
    heads: tuple[int, ...]
    mlp_ratios: tuple[float, ...]

    def size(self) -> int:
        per_layer = len(self.heads) * len(self.mlp_ratios)
        return len(self.embed_dims) * sum(per_layer**d for d in self.depths)


_EMBEDDING = ("patch_embed", "cls_token", "pos_embed")
BLOCKS = ("attention", "mlp", "embedding", "head", "norm")


def param_block(path: tuple) -> str:
    """The block of a parameter of these spaces' networks (own and masked graph name theirs
    alike) from its path: ``attention`` (``Attention_0``: qkv, output projection,
    relative-position tables), ``mlp`` (``fc1``, ``fc2``), ``embedding`` (patch embedding, class
    token, position embedding), ``head`` (the classifier) or ``norm`` (every LayerNorm).

    Raises:
      ValueError: a path of none of the blocks (not a vit-space network).
    """
    keys = [str(k) for k in path]
    if "Attention_0" in keys:
        return "attention"
    if "fc1" in keys or "fc2" in keys:
        return "mlp"
    if "head" in keys:
        return "head"
    if any(k in _EMBEDDING for k in keys):
        return "embedding"
    if "norm" in keys or any(k.startswith("LayerNorm") for k in keys):
        return "norm"
    raise ValueError(f"parameter {tuple(path)} belongs to no ViT block ({', '.join(BLOCKS)})")


class _AutoFormerSpace(SearchSpace):
    choices: ClassVar[_Choices]
    default_num_classes = 10
    default_input_shape = (32, 32, 3)
    param_block = staticmethod(param_block)
    # The smallest subnet's forward is 2.7x fewer FLOPs than the largest in vit-small (2.0x in
    # vit-tiny, 1.9x in vit-base), while its own network compiles for as long as the shared
    # kernel runs several times (README.md, "Search speed"): every subnet goes through the graph.
    shared_flops_max = 3.0

    _FIELDS = ("embed_dim", "depth", "heads", "mlp_ratio")

    def suggest(self, trial) -> Config:
        c = self.choices
        embed = trial.suggest_categorical("embed_dim", list(c.embed_dims))
        depth = trial.suggest_categorical("depth", list(c.depths))
        heads = [trial.suggest_categorical(f"heads_{i}", list(c.heads)) for i in range(depth)]
        ratios = [
            trial.suggest_categorical(f"mlp_ratio_{i}", list(c.mlp_ratios)) for i in range(depth)
        ]
        return {"embed_dim": embed, "depth": depth, "heads": heads, "mlp_ratio": ratios}

    def validate(self, config: Config) -> Config:
        """The normalized config; ``variant`` is kept only when it is not the default."""
        c = self.choices
        config = gather_layers(check_mapping(self.name, config), ("heads", "mlp_ratio"))
        check_fields(self.name, config, self._FIELDS, optional=("patch_size", "variant"))
        depth = check_choice("depth", config["depth"], c.depths)
        out = {
            "embed_dim": check_choice("embed_dim", config["embed_dim"], c.embed_dims),
            "depth": depth,
            "heads": [
                check_choice(f"heads[{i}]", v, c.heads)
                for i, v in enumerate(check_list("heads", config["heads"], depth, "depth"))
            ],
            "mlp_ratio": [
                check_choice(f"mlp_ratio[{i}]", v, c.mlp_ratios)
                for i, v in enumerate(check_list("mlp_ratio", config["mlp_ratio"], depth, "depth"))
            ],
        }
        if "patch_size" in config:
            out["patch_size"] = check_int("patch_size", config["patch_size"], 1, 1024)
        variant = check_choice("variant", config.get("variant", DEFAULT_VARIANT), list(VARIANTS))
        if variant != DEFAULT_VARIANT:
            out["variant"] = variant
        if VARIANTS[variant].head_dim is None:  # heads split the embedding
            e = out["embed_dim"]
            for i, h in enumerate(out["heads"]):
                if e % h:
                    divisors = [d for d in c.heads if e % d == 0]
                    raise ValueError(
                        f"heads[{i}]={h!r} does not divide embed_dim={e} (variant {variant!r} "
                        f"splits the embedding into heads); allowed values: {divisors}"
                    )
        return out

    def build(self, config: Config, num_classes: int | None = None, input_shape=None):
        config = self.validate(config)
        num_classes, (height, width, _) = self.resolve_io(num_classes, input_shape)
        patch = config.get("patch_size") or default_patch_size(height, width)
        if height % patch or width % patch:
            raise ValueError(
                f"patch_size={patch} does not divide the input {height}x{width}; "
                f"allowed values: divisors of both"
            )
        return VisionTransformer(
            embed_dim=config["embed_dim"],
            num_heads=tuple(config["heads"]),
            mlp_ratios=tuple(float(r) for r in config["mlp_ratio"]),
            patch_size=patch,
            num_classes=num_classes,
            variant=VARIANTS[config.get("variant", DEFAULT_VARIANT)],
        )

    def shared_graph(self, num_classes: int | None = None, input_shape=None) -> SharedGraph:
        """Every ``"autoformer"`` network with the input's default patch, as one masked module.

        See :mod:`._vit_masked`: the largest network of the space, the candidate an input array.
        Configs of the ``"autoprox"`` variant or with another ``patch_size`` are not held
        (``encode`` raises ValueError naming them).
        """
        num_classes, input_shape = self.resolve_io(num_classes, input_shape)
        c = self.choices
        module = SharedViT(
            max_embed=max(c.embed_dims),
            max_depth=max(c.depths),
            max_heads=max(c.heads),
            max_hidden=max(int(e * r) for e in c.embed_dims for r in c.mlp_ratios),
            patch_size=default_patch_size(*input_shape[:2]),
            num_classes=num_classes,
            variant=VARIANTS[DEFAULT_VARIANT],
        )
        encode = encoder(module.max_depth, module.patch_size, DEFAULT_VARIANT)
        return vit_graph(self, module, num_classes, input_shape, encode)

    def describe(self, config: Config) -> str:
        config = self.validate(config)
        text = (
            f"e{config['embed_dim']} d{config['depth']} heads {run_length(config['heads'])} "
            f"mlp {run_length([float(r) for r in config['mlp_ratio']])}"
        )
        text += f" p{config['patch_size']}" if "patch_size" in config else ""
        return text + (f" {config['variant']}" if "variant" in config else "")

    def short(self, config: Config) -> str:
        """``e384 d13 h6.2 m3.7``: embedding, depth, mean heads, mean MLP ratio (then ``p16``
        for a named patch, ``ap`` for the autoprox variant)."""
        config = self.validate(config)
        heads, ratios = config["heads"], config["mlp_ratio"]
        text = (
            f"e{config['embed_dim']} d{config['depth']} h{sum(heads) / len(heads):.1f} "
            f"m{sum(ratios) / len(ratios):.1f}"
        )
        text += f" p{config['patch_size']}" if "patch_size" in config else ""
        return text + (" ap" if config.get("variant") == "autoprox" else "")

    def size_extremes(self) -> tuple[Config, ...]:
        """Every choice at its least and at its most: parameters grow with each of them."""
        c = self.choices
        return tuple(
            {
                "embed_dim": pick(c.embed_dims),
                "depth": d,
                "heads": [pick(c.heads)] * d,
                "mlp_ratio": [pick(c.mlp_ratios)] * d,
            }
            for pick in (min, max)
            for d in (pick(c.depths),)
        )

    def enumerate(self) -> Iterator[Config]:
        c = self.choices
        for depth, embed in itertools.product(c.depths, c.embed_dims):
            for heads in itertools.product(c.heads, repeat=depth):
                for ratios in itertools.product(c.mlp_ratios, repeat=depth):
                    yield {
                        "embed_dim": embed,
                        "depth": depth,
                        "heads": list(heads),
                        "mlp_ratio": list(ratios),
                    }


# The choices of AutoFormer's supernet-T/S/B search spaces (experiments/supernet/supernet-*.yaml).
# Default budgets: the parameter ranges AutoFormer's own searches use (5-6M for T, 22-23M for S,
# 42-54M for B at 224x224, patch 16, 1,000 classes), as the same networks count at the default
# scoring setting (32x32, patch 8, 10 logits: 0.4-1.2M fewer; the ViT study in
# experiments/README.md read the offsets off its scored rows). Default objectives: what that study
# chose on 150 dev rows each of AutoFormer-T/S/B (ImageNet accuracy, inherited weights), with the
# per-block kernels' proxies allowed (they beat the best choice without them by 0.06-0.14 in the
# criterion, the rule set before the choice): the head's and the attention's share of the kernel's
# trace read smaller-is-better, the MLP block's λmin and trace bigger-is-better.


@register
class VitTiny(_AutoFormerSpace):
    """AutoFormer-T: embed {192, 216, 240}, depth {12, 13, 14}, heads {3, 4}, MLP {3.5, 4}."""

    name = "vit-tiny"
    choices = _Choices((192, 216, 240), (12, 13, 14), (3, 4), (3.5, 4.0))
    size = choices.size()
    default_budget = (4_600_000, 5_600_000)
    default_objective = "rank(blk_head_share:min+blk_mlp_trace:max+ntk_corr_cond:max)"


@register
class VitSmall(_AutoFormerSpace):
    """AutoFormer-S: embed {320, 384, 448}, depth {12, 13, 14}, heads {5, 6, 7}, MLP {3, 3.5, 4}."""

    name = "vit-small"
    choices = _Choices((320, 384, 448), (12, 13, 14), (5, 6, 7), (3.0, 3.5, 4.0))
    size = choices.size()
    default_budget = (21_200_000, 22_400_000)
    default_objective = "rank(blk_mlp_eig_min:max+blk_head_share:min)"


@register
class VitBase(_AutoFormerSpace):
    """AutoFormer-B: embed {528, 576, 624}, depth {14, 15, 16}, heads {9, 10}, MLP {3, 3.5, 4}."""

    name = "vit-base"
    choices = _Choices((528, 576, 624), (14, 15, 16), (9, 10), (3.0, 3.5, 4.0))
    size = choices.size()
    default_budget = (40_800_000, 53_000_000)
    default_objective = "blk_attention_share:min"
