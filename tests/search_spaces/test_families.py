"""Family-specific choices: ViT patch rule and head width, ResNet stem rule, Mixer patch checks."""

import jax
import jax.numpy as jnp
import pytest

from search_spaces import get_space
from search_spaces.resnet import default_stem
from search_spaces.vit import default_patch_size

VIT_T = {"embed_dim": 216, "depth": 12, "heads": [4] * 12, "mlp_ratio": [3.5] * 12}


@pytest.mark.parametrize(
    ("height", "width", "patch"),
    [
        (224, 224, 16),
        (384, 384, 16),
        (32, 32, 8),
        (64, 64, 16),
        (28, 28, 4),
        (16, 16, 4),
        (8, 8, 2),
        (7, 7, 1),
        (32, 48, 8),
    ],
)
def test_vit_patch_rule(height, width, patch):
    assert default_patch_size(height, width) == patch


def _shapes(module, input_shape):
    x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    return jax.eval_shape(module.init, jax.random.PRNGKey(0), x)["params"]


def test_vit_heads_are_64_wide_and_mlp_follows_ratio():
    module = get_space("vit-tiny").build(VIT_T)
    block = _shapes(module, (32, 32, 3))["block_0"]
    assert block["Attention_0"]["qkv"]["kernel"].shape == (216, 3 * 4 * 64)
    assert block["Attention_0"]["proj"]["kernel"].shape == (4 * 64, 216)
    assert block["fc1"]["kernel"].shape == (216, 756)  # 216 * 3.5


def test_vit_explicit_patch_size():
    space = get_space("vit-tiny")
    module = space.build(dict(VIT_T, patch_size=4))
    assert _shapes(module, (32, 32, 3))["pos_embed"].shape == (1, 8 * 8 + 1, 216)
    assert space.describe(dict(VIT_T, patch_size=4)).endswith("p4")
    with pytest.raises(ValueError, match="patch_size=5 does not divide the input 32x32"):
        space.build(dict(VIT_T, patch_size=5))


def test_vit_describe_is_short_and_per_layer():
    space = get_space("vit-small")
    config = {
        "embed_dim": 448,
        "depth": 13,
        "heads": [5] * 6 + [7] * 7,
        "mlp_ratio": [3.0, 3.5] + [4.0] * 11,
    }
    assert space.describe(config) == "e448 d13 heads 5x6,7x7 mlp 3,3.5,4x11"


@pytest.mark.parametrize(("height", "stem"), [(224, "imagenet"), (128, "imagenet"), (32, "cifar")])
def test_resnet_stem_rule(height, stem):
    assert default_stem(height, height) == stem
    module = get_space("resnet").build(
        {"block": "basic", "depths": [1, 1, 1], "width": 16}, input_shape=(height, height, 3)
    )
    assert module.stem == stem


def test_resnet_explicit_stem_changes_the_stem_only():
    space = get_space("resnet")
    config = {"block": "basic", "depths": [1, 1, 1, 1], "width": 64}
    cifar = _shapes(
        space.build(dict(config, stem="cifar"), input_shape=(224, 224, 3)), (224,) * 2 + (3,)
    )
    imagenet = _shapes(space.build(config, input_shape=(224, 224, 3)), (224, 224, 3))
    assert cifar["stem"]["kernel"].shape == (3, 3, 3, 64)
    assert imagenet["stem"]["kernel"].shape == (7, 7, 3, 64)
    with pytest.raises(ValueError, match="stem='tiny'.*cifar"):
        space.validate(dict(config, stem="tiny"))


def test_resnet_bottleneck_widths():
    config = {"block": "bottleneck", "depths": [1, 1, 1], "width": 32}
    params = _shapes(get_space("resnet").build(config, num_classes=5), (32, 32, 3))
    assert params["fc"]["kernel"].shape == (32 * 2**2 * 4, 5)  # width * 2**2 * expansion 4
    assert params["stage2_block0"]["downsample"]["kernel"].shape == (1, 1, 256, 512)


def test_mixer_patch_must_divide_input():
    space = get_space("mlp-mixer")
    config = {
        "patch_size": 16,
        "depth": 2,
        "hidden_dim": 128,
        "tokens_mlp_dim": 64,
        "channels_mlp_dim": 256,
    }
    with pytest.raises(ValueError, match=r"patch_size=16 does not divide the input 28x28.*\[4\]"):
        space.build(config, input_shape=(28, 28, 1))
    params = _shapes(space.build(config, input_shape=(32, 32, 3)), (32, 32, 3))
    token_mlp = params["block_0"]["token_mixing"]
    assert token_mlp["Dense_0"]["kernel"].shape == (4, 64)  # (32/16)^2 = 4 patches


def test_mlp_flattens_the_input():
    config = {"depth": 2, "width": 128, "activation": "erf"}
    params = _shapes(get_space("mlp").build(config, input_shape=(8, 8, 1)), (8, 8, 1))
    assert params["dense_0"]["kernel"].shape == (64, 128)
    assert params["readout"]["kernel"].shape == (128, 10)
