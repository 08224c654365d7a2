"""The AutoFormer network of the vit spaces: relative positions, pooling, variants, NTK."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from search_spaces import get_space
from search_spaces._autoformer_layers import (
    VARIANTS,
    Attention,
    Variant,
    VisionTransformer,
    relative_position_index,
    relative_position_onehots,
)

from ..ntk.structured._reference import check_all, dense_fallbacks

VIT_T = {"embed_dim": 216, "depth": 12, "heads": [3, 4] * 6, "mlp_ratio": [3.5, 4.0, 4.0] * 4}


def _params(module, input_shape, key=0):
    x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    return jax.eval_shape(module.init, jax.random.PRNGKey(key), x)["params"]


def _size(tree):
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def test_relative_position_rows_by_hand():
    """A 2x3 grid: token 1 + 3r + c; distances key - query, offset R + 1; the class token row 0."""
    rows_v, rows_h = relative_position_index((2, 3), 14)
    assert rows_v.shape == rows_h.shape == (7, 7)
    assert (rows_v[0] == 0).all() and (rows_v[:, 0] == 0).all() and (rows_h[0] == 0).all()
    # query (0, 0) = token 1, key (1, 2) = token 6: dv = 1 (R_v = 2), dh = 2 (R_h = 3)
    assert rows_v[1, 6] == 1 + 2 + 1 and rows_h[1, 6] == 2 + 3 + 1
    assert rows_v[6, 1] == -1 + 2 + 1 and rows_h[6, 1] == -2 + 3 + 1
    assert rows_v[3, 3] == 3 and rows_h[3, 3] == 4  # same token: distance 0
    # beyond the clip distance: a 1x20 grid, dh = 19 is clipped to 14 (row 29 of 30)
    _, rows_h = relative_position_index((1, 20), 14)
    assert rows_h[1, 20] == 14 + 14 + 1 and rows_h[20, 1] == -14 + 14 + 1
    onehot_v, onehot_h = relative_position_onehots((1, 20), 14, jnp.float32)
    assert onehot_v.shape == (21, 21, 4) and onehot_h.shape == (21, 21, 30)
    np.testing.assert_array_equal(np.asarray(onehot_h).argmax(-1), rows_h)


@pytest.mark.parametrize(
    ("input_shape", "rows_v", "rows_h"),
    [
        ((224, 224, 3), 30, 30),
        ((32, 32, 3), 10, 10),
        ((32, 64, 3), 10, 18),
        ((448, 448, 3), 30, 30),
    ],
)
def test_tables_follow_the_grid(input_shape, rows_v, rows_h):
    """AutoFormer's 2*14+2 rows on its 14x14 grid; the grid's side caps the distance below that."""
    module = get_space("vit-small").build(
        {"embed_dim": 320, "depth": 12, "heads": [5] * 12, "mlp_ratio": [3.0] * 12},
        input_shape=input_shape,
    )
    attn = _params(module, input_shape)["block_11"]["Attention_0"]
    for use in ("rel_pos_k", "rel_pos_v"):
        assert attn[use]["vertical"].shape == (rows_v, 64)
        assert attn[use]["horizontal"].shape == (rows_h, 64)


def test_relative_attention_matches_the_gathered_embeddings():
    """Attention with one-hot matmuls equals AutoFormer's formula with gathered a_ij and b_ij."""
    grid, heads, c, d = (2, 3), 2, 4, 6
    t = 1 + grid[0] * grid[1]
    x = jax.random.normal(jax.random.PRNGKey(0), (2, t, d), jnp.float64)
    module = Attention(heads, c)
    onehots = relative_position_onehots(grid, 14, jnp.float64)
    variables = jax.jit(module.init)(jax.random.PRNGKey(1), x, onehots)
    p = jax.tree.map(np.asarray, variables["params"])
    got = np.asarray(jax.jit(module.apply)(variables, x, onehots))

    rows_v, rows_h = relative_position_index(grid, 14)

    def embedding(use):  # (t, t, c)
        return p[use]["vertical"][rows_v] + p[use]["horizontal"][rows_h]

    xs = np.asarray(x)
    qkv = (xs @ p["qkv"]["kernel"] + p["qkv"]["bias"]).reshape(2, t, 3, heads, c)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    a, b = embedding("rel_pos_k"), embedding("rel_pos_v")
    logits = np.einsum("nqhc,nkhc->nhqk", q, k) + np.einsum("nqhc,qkc->nhqk", q, a)
    logits = logits / np.sqrt(c)
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w = w / w.sum(-1, keepdims=True)
    out = np.einsum("nhqk,nkhc->nqhc", w, v) + np.einsum("nhqk,qkc->nqhc", w, b)
    want = out.reshape(2, t, heads * c) @ p["proj"]["kernel"] + p["proj"]["bias"]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert np.abs(np.einsum("nhqk,qkc->nqhc", w, b)).max() > 1e-3  # the test can fail


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_head_reads_the_mean_of_the_patch_tokens(variant):
    module = VisionTransformer(
        embed_dim=12,
        num_heads=(3, 2),
        mlp_ratios=(2.0, 1.5),
        patch_size=4,
        num_classes=5,
        variant=VARIANTS[variant],
    )
    x = jax.random.normal(jax.random.PRNGKey(2), (2, 16, 16, 3), jnp.float64)
    variables = jax.jit(module.init)(jax.random.PRNGKey(3), x)
    logits, state = jax.jit(module.apply, static_argnames="capture_intermediates")(
        variables, x, capture_intermediates=True
    )
    tokens = np.asarray(state["intermediates"]["norm"]["__call__"][0])  # (2, 17, 12)
    head = variables["params"]["head"]
    want = tokens[:, 1:].mean(1) @ np.asarray(head["kernel"]) + np.asarray(head["bias"])
    np.testing.assert_allclose(np.asarray(logits), want, rtol=1e-10, atol=1e-12)
    from_cls = tokens[:, 0] @ np.asarray(head["kernel"]) + np.asarray(head["bias"])
    assert not np.allclose(want, from_cls)


def test_autoformer_and_autoprox_layers():
    space = get_space("vit-tiny")
    autoformer = space.build(VIT_T)
    autoprox = space.build(dict(VIT_T, variant="autoprox"))
    assert autoformer.variant == VARIANTS["autoformer"]
    assert autoformer.variant.ln_epsilon == 1e-5 and autoprox.variant.ln_epsilon == 1e-6
    a = _params(autoformer, (32, 32, 3))["block_1"]  # 4 heads
    assert a["Attention_0"]["qkv"]["kernel"].shape == (216, 3 * 4 * 64)
    assert a["Attention_0"]["proj"]["kernel"].shape == (4 * 64, 216)
    assert set(a["Attention_0"]) == {"qkv", "proj", "rel_pos_k", "rel_pos_v"}
    p = _params(autoprox, (32, 32, 3))["block_1"]
    assert p["Attention_0"]["qkv"]["kernel"].shape == (216, 3 * 216)  # 4 heads of 54
    assert p["Attention_0"]["proj"]["kernel"].shape == (216, 216)
    assert set(p["Attention_0"]) == {"qkv", "proj"}
    assert p["fc1"]["kernel"].shape == a["fc1"]["kernel"].shape == (216, 864)  # 216 * 4


def test_autoprox_count_follows_its_description():
    """Auto-Prox's AutoFormerSub at 224 px, patch 16, 100 classes, counted from its layers:
    patch conv, class token, 197 positions, per layer two LayerNorms, qkv E->3E and proj E->E with
    biases, MLP E->int(E r)->E; the final LayerNorm and the head."""
    e, heads, ratios = 216, [3, 4, 4, 3, 4, 3, 3, 4, 4, 4, 3, 3, 4], [3.5, 4.0] * 6 + [4.0]
    config = {"embed_dim": e, "depth": 13, "heads": heads, "mlp_ratio": ratios}
    module = get_space("vit-tiny").build(
        dict(config, variant="autoprox"), num_classes=100, input_shape=(224, 224, 3)
    )
    want = 3 * 16 * 16 * e + e + e + 197 * e + 2 * e + e * 100 + 100
    for r in ratios:
        m = int(e * r)
        want += 2 * e + (e * 3 * e + 3 * e) + (e * e + e) + 2 * e + (e * m + m) + (m * e + e)
    assert _size(_params(module, (224, 224, 3))) == want


def test_variant_is_validated_and_described():
    space = get_space("vit-small")
    config = {"embed_dim": 384, "depth": 12, "heads": [6] * 12, "mlp_ratio": [4.0] * 12}
    assert space.validate(dict(config, variant="autoformer")) == config  # the default is implied
    assert space.validate(dict(config, variant="autoprox")) == dict(config, variant="autoprox")
    assert space.describe(dict(config, variant="autoprox")).endswith(" autoprox")
    with pytest.raises(ValueError, match=r"variant='deit'.*\['autoformer', 'autoprox'\]"):
        space.validate(dict(config, variant="deit"))
    bad = dict(config, heads=[6] * 11 + [5], variant="autoprox")
    with pytest.raises(ValueError, match=r"heads\[11\]=5 does not divide embed_dim=384.*\[6\]"):
        space.validate(bad)
    assert space.validate(dict(bad, variant="autoformer"))["heads"][11] == 5


def test_vit_base_is_autoformer_b():
    space = get_space("vit-base")
    assert space.size == 3 * (6**14 + 6**15 + 6**16)
    config = {"embed_dim": 576, "depth": 15, "heads": [9, 10] * 7 + [9], "mlp_ratio": [3.5] * 15}
    assert space.validate(config) == config
    with pytest.raises(ValueError, match=r"heads\[0\]=8 is not allowed.*\[9, 10\]"):
        space.validate(dict(config, heads=[8] + config["heads"][1:]))
    with pytest.raises(ValueError, match=r"depth=12 is not allowed.*\[14, 15, 16\]"):
        space.validate(dict(config, depth=12))
    shapes = _params(space.build(config), space.default_input_shape)
    assert shapes["block_14"]["Attention_0"]["qkv"]["kernel"].shape == (576, 3 * 9 * 64)


def test_structured_derivatives_match_the_reference_without_dense_fallback():
    """Float64: structured == explicit Jacobians == Jacobian contraction on a tiny AutoFormer
    (a 2x3 patch grid, relative positions, mean pooling); no primitive falls back to the dense
    rule."""
    module = VisionTransformer(
        embed_dim=8,
        num_heads=(2,),
        mlp_ratios=(1.5,),
        patch_size=4,
        num_classes=2,
        variant=Variant(head_dim=4, max_relative_position=14, ln_epsilon=1e-5),
    )
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(4), 3)
    x1 = jax.random.normal(k1, (3, 8, 12, 3), jnp.float64)
    x2 = jax.random.normal(k2, (2, 8, 12, 3), jnp.float64)
    params = jax.tree.map(lambda a: a.astype(jnp.float64), jax.jit(module.init)(k3, x1)["params"])
    assert params["block_0"]["Attention_0"]["rel_pos_k"]["horizontal"].shape == (8, 4)

    def f(p, x):
        return module.apply({"params": p}, x)

    with dense_fallbacks() as dense:
        check_all(f, x1, x2, params)
    assert dense == []
