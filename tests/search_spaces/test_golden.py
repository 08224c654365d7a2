"""Parameter counts of published models, built from the spaces (shapes only, nothing allocated).

BatchNorm scale and bias count as parameters; running statistics (``batch_stats``) do not, as in
PyTorch's ``sum(p.numel() for p in model.parameters())``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from search_spaces import get_space


def count_params(module, input_shape):
    x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    variables = jax.eval_shape(module.init, jax.random.PRNGKey(0), x)
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(variables["params"]))


def _vit(dim, depth, heads, ratio):
    return {
        "embed_dim": dim,
        "depth": depth,
        "heads": [heads] * depth,
        "mlp_ratio": [ratio] * depth,
    }


def _mixer(depth, hidden, tokens, channels):
    return {
        "patch_size": 16,
        "depth": depth,
        "hidden_dim": hidden,
        "tokens_mlp_dim": tokens,
        "channels_mlp_dim": channels,
    }


IMAGENET = (224, 224, 3)
GOLDEN = [
    # timm vit_small_patch16_224 / google-research/vision_transformer ViT-S/16: 22,050,664.
    # In AutoFormer-S: embed 384, depth 12, 6 heads (head dim 64), MLP ratio 4. Auto-Prox's
    # variant has ViT's layers (qkv width = embed dim = 6 * 64) and pools, which adds nothing.
    ("vit-small", dict(_vit(384, 12, 6, 4.0), variant="autoprox"), 1000, IMAGENET, 22_050_664),
    # The AutoFormer network adds per layer two relative-position tables (vertical, horizontal)
    # of 2*14+2 rows x 64 on keys and two on values: 22,050,664 + 12 * 4 * 30 * 64.
    ("vit-small", _vit(384, 12, 6, 4.0), 1000, IMAGENET, 22_142_824),
    # timm vit_tiny_patch16_224 (ViT-Ti/16, DeiT-Ti): 5,717,416. In AutoFormer-T: 192, 12, 3, 4.
    ("vit-tiny", dict(_vit(192, 12, 3, 4.0), variant="autoprox"), 1000, IMAGENET, 5_717_416),
    ("vit-tiny", _vit(192, 12, 3, 4.0), 1000, IMAGENET, 5_717_416 + 12 * 4 * 30 * 64),
    # The 3,003 AutoFormer-T/S/B subnets of OoD-ViT-NAS: tests/search_spaces/test_vit_golden.py.
    # torchvision resnet18: 11,689,512.
    ("resnet", {"block": "basic", "depths": [2, 2, 2, 2], "width": 64}, 1000, IMAGENET, 11_689_512),
    # torchvision resnet50 (v1.5): 25,557,032.
    (
        "resnet",
        {"block": "bottleneck", "depths": [3, 4, 6, 3], "width": 64},
        1000,
        IMAGENET,
        25_557_032,
    ),
    # timm mixer_s16_224 (18.5M; MLP-Mixer paper Table 1: 18M): 18,528,264.
    ("mlp-mixer", _mixer(8, 512, 256, 2048), 1000, IMAGENET, 18_528_264),
    # timm mixer_b16_224 (59.9M; MLP-Mixer paper: 59M): 59,880,472.
    ("mlp-mixer", _mixer(12, 768, 384, 3072), 1000, IMAGENET, 59_880_472),
    # NAS-Bench-201, CIFAR-10: the largest (1.53 MB, all nor_conv_3x3) and smallest (0.07 MB,
    # all skip_connect) parameter counts of the benchmark; exact values from NAS-Bench-201's
    # TinyNetwork (xautodl) with 10 classes.
    ("nb201", {"cell": "222222"}, 10, (32, 32, 3), 1_531_546),
    ("nb201", {"cell": "000000"}, 10, (32, 32, 3), 73_306),
]


@pytest.mark.parametrize(("name", "config", "classes", "shape", "expected"), GOLDEN)
def test_published_parameter_counts(name, config, classes, shape, expected):
    module = get_space(name).build(config, num_classes=classes, input_shape=shape)
    assert count_params(module, shape) == expected


def test_vit_patch16_at_224_by_rule_and_by_option():
    """224x224 picks patch 16 by itself; naming patch 16 explicitly gives the same network."""
    space = get_space("vit-small")
    config = _vit(384, 12, 6, 4.0)
    by_rule = space.build(config, num_classes=1000, input_shape=IMAGENET)
    explicit = space.build(dict(config, patch_size=16), num_classes=1000, input_shape=IMAGENET)
    assert by_rule.patch_size == explicit.patch_size == 16
    # at the 32x32 default the rule picks patch 8: 16 patches + class token in the position table
    small = space.build(config)
    variables = jax.eval_shape(small.init, jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
    assert small.patch_size == 8
    assert variables["params"]["pos_embed"].shape == (1, 17, 384)


def test_nb201_counts_follow_the_ops():
    """Each conv edge adds C*C*k*k + 2C (BN) per cell; parameter-free ops add nothing."""
    space = get_space("nb201")
    base = count_params(space.build({"cell": "000000"}), (32, 32, 3))
    assert count_params(space.build({"cell": "140410"}), (32, 32, 3)) == base
    per_cell = sum(c * c * 9 + 2 * c for c in (16, 32, 64)) * 5  # one conv3x3 edge, 15 cells
    assert count_params(space.build({"cell": "002000"}), (32, 32, 3)) == base + per_cell
    per_cell_1x1 = sum(c * c + 2 * c for c in (16, 32, 64)) * 5
    assert count_params(space.build({"cell": "300000"}), (32, 32, 3)) == base + per_cell_1x1
