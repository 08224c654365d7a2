"""Every registered space honours the contract: suggest -> validate -> build -> init -> forward.

The tests are parametrized over ``list_spaces()``, so a newly registered space is tested
automatically, and ``test_every_space_has_a_small_input`` fails until it gets an entry below.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optuna
import pytest

import search_spaces
from search_spaces import get_space, list_spaces

optuna.logging.set_verbosity(optuna.logging.WARNING)

# One small architecture and input per space, drawn through suggest() with a FixedTrial, keeps the
# numerical forward tests fast; random suggestions are built and shape-checked separately.
_VIT_S = {"embed_dim": 320, "depth": 12, **{f"heads_{i}": 5 for i in range(12)}}
_VIT_T = {"embed_dim": 192, "depth": 12, **{f"heads_{i}": 3 for i in range(12)}}
SMALL = {
    "mlp": ({"depth": 3, "width": 64, "activation": "gelu"}, (8, 8, 1)),
    "mlp-mixer": (
        {
            "patch_size": 4,
            "depth": 2,
            "hidden_dim": 128,
            "tokens_mlp_dim": 64,
            "channels_mlp_dim": 256,
        },
        (16, 16, 3),
    ),
    "nb201": (
        {
            f"edge_{e}": op
            for e, op in enumerate(
                [
                    "nor_conv_3x3",
                    "skip_connect",
                    "avg_pool_3x3",
                    "nor_conv_1x1",
                    "none",
                    "nor_conv_3x3",
                ]
            )
        },
        (16, 16, 3),
    ),
    "resnet": (
        {
            "block": "bottleneck",
            "num_stages": 3,
            "depths_0": 1,
            "depths_1": 2,
            "depths_2": 1,
            "width": 16,
        },
        (16, 16, 3),
    ),
    "vit-small": (
        {**_VIT_S, **{f"mlp_ratio_{i}": 3.0 + 0.5 * (i % 3) for i in range(12)}},
        (16, 16, 3),
    ),
    "vit-tiny": ({**_VIT_T, **{f"mlp_ratio_{i}": 3.5 for i in range(12)}}, (16, 16, 3)),
    "vit-base": (
        {
            "embed_dim": 528,
            "depth": 14,
            **{f"heads_{i}": 9 for i in range(14)},
            **{f"mlp_ratio_{i}": 3.0 for i in range(14)},
        },
        (16, 16, 3),
    ),
}


def test_every_space_has_a_small_input():
    assert set(SMALL) == set(list_spaces())


def test_expected_spaces_are_registered():
    assert set(list_spaces()) >= {
        "vit-small",
        "vit-tiny",
        "vit-base",
        "nb201",
        "resnet",
        "mlp-mixer",
        "mlp",
    }
    assert {n for n in list_spaces() if get_space(n).has_batch_norm} == {"nb201", "resnet"}


def test_unknown_space_lists_known_ones():
    with pytest.raises(ValueError, match="unknown search space 'vit-huge'") as e:
        get_space("vit-huge")
    for name in list_spaces():
        assert name in str(e.value)


def test_register_twice_is_an_error():
    with pytest.raises(ValueError, match="registered twice"):
        search_spaces.register(type(get_space("mlp")))


@pytest.mark.parametrize("name", list_spaces())
def test_suggest_validate_build_forward(name):
    space = get_space(name)
    assert space.name == name
    assert len(space.default_input_shape) == 3 and space.default_num_classes > 1
    params, shape = SMALL[name]
    config = space.suggest(optuna.trial.FixedTrial(params))
    assert space.validate(config) == config
    assert space.validate(params) == config  # the flat trial.params give back the same config
    assert isinstance(space.describe(config), str) and 0 < len(space.describe(config)) < 120

    n, classes = 3, 7
    module = space.build(config, num_classes=classes, input_shape=shape)
    x = jax.random.normal(jax.random.PRNGKey(1), (n, *shape), jnp.float32)
    variables = module.init(jax.random.PRNGKey(0), x)
    apply = jax.jit(module.apply, static_argnames=("train", "mutable"))
    y = apply(variables, x)
    assert y.shape == (n, classes)
    assert bool(jnp.all(jnp.isfinite(y)))
    assert float(jnp.std(y)) > 0  # a real network, not a constant

    # train=False keeps examples independent: example 0's logits ignore a change to example 1
    x_other = x.at[1].set(jax.random.normal(jax.random.PRNGKey(3), shape, jnp.float32))
    y_other = apply(variables, x_other)
    np.testing.assert_allclose(np.asarray(y[0]), np.asarray(y_other[0]), rtol=1e-5, atol=1e-6)
    assert not np.allclose(np.asarray(y[1]), np.asarray(y_other[1]))

    y_train, updates = apply(variables, x, train=True, mutable=("batch_stats",))
    assert y_train.shape == (n, classes) and bool(jnp.all(jnp.isfinite(y_train)))
    assert ("batch_stats" in variables) == space.has_batch_norm
    if space.has_batch_norm:  # batch statistics were used, so examples now interact
        assert not np.allclose(np.asarray(y_train), np.asarray(y))
        assert jax.tree.structure(updates["batch_stats"]) == jax.tree.structure(
            variables["batch_stats"]
        )
        y_train_other, _ = apply(variables, x_other, train=True, mutable=("batch_stats",))
        assert not np.allclose(np.asarray(y_train[0]), np.asarray(y_train_other[0]))


@pytest.mark.parametrize("name", list_spaces())
@pytest.mark.parametrize("seed", [0, 1])
def test_random_suggestions_build_at_default_input(name, seed):
    """Random draws build, and None means the space's defaults (shapes only: no compute)."""
    space = get_space(name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    trial = study.ask()
    config = space.suggest(trial)
    assert space.validate(config) == config == space.validate(trial.params)
    module = space.build(config)
    x = jax.ShapeDtypeStruct((2, *space.default_input_shape), jnp.float32)
    variables = jax.eval_shape(module.init, jax.random.PRNGKey(0), x)
    out = jax.eval_shape(module.apply, variables, x)
    assert out.shape == (2, space.default_num_classes)


@pytest.mark.parametrize("name", list_spaces())
def test_many_suggestions_are_valid(name):
    """Samplers of every kind only produce configs inside the space."""
    space = get_space(name)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=3))
    for i in range(8):
        trial = study.ask()
        config = space.suggest(trial)
        assert space.validate(trial.params) == space.validate(config) == config
        study.tell(trial, float(i))


@pytest.mark.parametrize("name", list_spaces())
def test_enumerate_starts_with_valid_configs(name):
    space = get_space(name)
    assert isinstance(space.size, int) and space.size > 0
    first = [c for _, c in zip(range(20), space.enumerate())]
    assert len(first) == min(20, space.size)
    assert all(space.validate(c) == c for c in first)
    assert len({space.describe(c) for c in first}) == len(first)


@pytest.mark.parametrize("name", ["mlp", "mlp-mixer", "nb201", "resnet"])
def test_enumerate_lists_exactly_size_distinct_configs(name):
    space = get_space(name)
    seen = {repr(sorted(c.items())) for c in space.enumerate()}
    assert len(seen) == space.size


def test_sizes():
    # counted from the choices: 5 ops on 6 edges; AutoFormer-S per layer 3 heads x 3 ratios, ...
    assert get_space("nb201").size == 15_625
    assert get_space("vit-small").size == 3 * (9**12 + 9**13 + 9**14)
    assert get_space("vit-tiny").size == 3 * (4**12 + 4**13 + 4**14)
    assert get_space("vit-base").size == 3 * (6**14 + 6**15 + 6**16)
    assert get_space("mlp").size == 10 * 6 * 6
    assert get_space("mlp-mixer").size == 3 * 11 * 5 * 4 * 5
    assert get_space("resnet").size == 2 * 5 * (9**3 + 9**4)


def _params(space, config, shape) -> int:
    x = jax.ShapeDtypeStruct((1, *shape), jnp.float32)
    init = space.build(config, input_shape=shape).init
    variables = jax.eval_shape(init, jax.random.PRNGKey(0), x)
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(variables["params"]))


@pytest.mark.parametrize("name", list_spaces())
def test_short_is_one_cell(name):
    """``short`` fits a leaderboard cell (the table keeps 100 columns) and tells configs apart
    as well as the main choices do; the extremes, the longest forms, included."""
    space = get_space(name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    configs = [*space.size_extremes(), *(space.suggest(study.ask()) for _ in range(30))]
    for config in configs:
        text = space.short(config)
        assert 0 < len(text) <= search_spaces.SHORT_WIDTH and "\n" not in text, text
        assert text == space.short(space.validate(config))
    assert len({space.short(c) for c in configs}) > len(configs) // 2


@pytest.mark.parametrize("name", list_spaces())
def test_size_extremes_hold_the_fewest_and_most_params(name):
    """Random draws have parameter counts between the extremes' (at the small input; the
    budget check relies on it at every input)."""
    space = get_space(name)
    shape = SMALL[name][1]
    extremes = [_params(space, c, shape) for c in space.size_extremes()]
    assert len(extremes) >= 2 and min(extremes) < max(extremes)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(4):
        n = _params(space, space.suggest(study.ask()), shape)
        assert min(extremes) <= n <= max(extremes), (n, extremes)
