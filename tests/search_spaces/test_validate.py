"""validate() rejects configs outside the space with messages naming field, value and allowed."""

import pytest

from search_spaces import get_space, list_spaces

VIT_S = {"embed_dim": 384, "depth": 12, "heads": [6] * 12, "mlp_ratio": [4.0] * 12}
GOOD = {
    "vit-small": VIT_S,
    "vit-tiny": {"embed_dim": 192, "depth": 13, "heads": [3] * 13, "mlp_ratio": [3.5] * 13},
    "vit-base": {"embed_dim": 576, "depth": 15, "heads": [10] * 15, "mlp_ratio": [3.5] * 15},
    "nb201": {"cell": "210342"},
    "resnet": {"block": "basic", "depths": [2, 2, 2, 2], "width": 64},
    "mlp-mixer": {
        "patch_size": 16,
        "depth": 8,
        "hidden_dim": 512,
        "tokens_mlp_dim": 256,
        "channels_mlp_dim": 2048,
    },
    "mlp": {"depth": 3, "width": 512, "activation": "relu"},
}
# (space, field to change, bad value, text the message must contain besides field and value)
BAD_VALUES = [
    ("vit-small", "embed_dim", 500, "[320, 384, 448]"),
    ("vit-small", "depth", 11, "[12, 13, 14]"),
    ("vit-tiny", "embed_dim", 384, "[192, 216, 240]"),
    ("nb201", "cell", "222225", "0-4"),
    ("nb201", "cell", "22222", "6 digits"),
    ("nb201", "cell", 222222, "6 digits"),
    ("resnet", "block", "wide", "['basic', 'bottleneck']"),
    ("resnet", "width", 40, "[16, 24, 32, 48, 64]"),
    ("mlp-mixer", "patch_size", 32, "[4, 8, 16]"),
    ("mlp-mixer", "depth", 20, "2..12"),
    ("mlp-mixer", "hidden_dim", 1024, "[128, 256, 384, 512, 768]"),
    ("mlp", "activation", "elu", "relu"),
    ("mlp", "width", 100, "[64, 128, 256, 512, 1024, 2048]"),
    ("mlp", "depth", 0, "1..10"),
    ("mlp", "depth", 2.5, "1..10"),
]


def test_every_space_has_a_good_config():
    assert set(GOOD) == set(list_spaces())


@pytest.mark.parametrize("name", list_spaces())
def test_good_config_is_accepted(name):
    space = get_space(name)
    assert space.validate(GOOD[name]) == GOOD[name]


@pytest.mark.parametrize(("name", "field", "value", "allowed"), BAD_VALUES)
def test_bad_value_names_field_value_and_allowed(name, field, value, allowed):
    config = dict(GOOD[name], **{field: value})
    with pytest.raises(ValueError) as e:
        get_space(name).validate(config)
    message = str(e.value)
    assert field in message and repr(value) in message and allowed in message


@pytest.mark.parametrize("name", list_spaces())
def test_missing_and_unknown_fields(name):
    space = get_space(name)
    field = sorted(GOOD[name])[0]
    missing = {k: v for k, v in GOOD[name].items() if k != field}
    with pytest.raises(ValueError, match=f"missing field.*{field}"):
        space.validate(missing)
    with pytest.raises(ValueError, match="unknown field.*colour"):
        space.validate(dict(GOOD[name], colour="red"))


@pytest.mark.parametrize("name", list_spaces())
def test_not_a_mapping(name):
    with pytest.raises(TypeError, match="dict"):
        get_space(name).validate(["222222"])


def test_vit_per_layer_errors():
    space = get_space("vit-small")
    with pytest.raises(ValueError, match=r"heads has 11 entries but depth=12"):
        space.validate(dict(VIT_S, heads=[6] * 11))
    with pytest.raises(ValueError, match=r"heads\[3\]=4 .*\[5, 6, 7\]"):
        space.validate(dict(VIT_S, heads=[6, 6, 6, 4] + [6] * 8))
    with pytest.raises(ValueError, match=r"mlp_ratio\[0\]=2.5 .*\[3.0, 3.5, 4.0\]"):
        space.validate(dict(VIT_S, mlp_ratio=[2.5] + [4.0] * 11))
    with pytest.raises(ValueError, match="both"):
        space.validate(dict(VIT_S, heads_0=6))
    with pytest.raises(ValueError, match="without gaps"):
        flat = {k: v for k, v in VIT_S.items() if k != "heads"}
        space.validate(dict(flat, **{f"heads_{i}": 6 for i in range(12) if i != 5}, heads_12=6))


def test_numbers_are_normalized():
    space = get_space("vit-small")
    config = space.validate(dict(VIT_S, embed_dim=384.0, mlp_ratio=[4] * 12))
    assert config == VIT_S and isinstance(config["embed_dim"], int)
    with pytest.raises(ValueError, match="embed_dim=True"):
        space.validate(dict(VIT_S, embed_dim=True))


def test_build_rejects_bad_io():
    space = get_space("mlp")
    with pytest.raises(ValueError, match="num_classes=0"):
        space.build(GOOD["mlp"], num_classes=0)
    with pytest.raises(ValueError, match="input_shape"):
        space.build(GOOD["mlp"], input_shape=(32, 32))


def test_resnet_num_stages_must_match_depths():
    space = get_space("resnet")
    with pytest.raises(ValueError, match="depths has 4 entries but num_stages=3"):
        space.validate(dict(GOOD["resnet"], num_stages=3))
    with pytest.raises(ValueError, match=r"len\(depths\)=5"):
        space.validate(dict(GOOD["resnet"], depths=[1] * 5))
    with pytest.raises(ValueError, match=r"depths\[1\]=10 .*1..9"):
        space.validate(dict(GOOD["resnet"], depths=[1, 10, 1]))
