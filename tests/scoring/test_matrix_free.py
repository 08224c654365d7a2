"""Scoring without forming the kernel: above ``matrix_free_above`` rows the proxies come from the
compiled NTK-vector product, and equal the formed kernel's where Lanczos is exact."""

import math

import pytest

from ntknas import scoring

from .._small import shrink_mlp

# Both tests read one module-scoped pair of scores: one xdist worker runs them, so it is made once.
pytestmark = pytest.mark.xdist_group("scoring_matrix_free")

_CONFIG = {"depth": 2, "width": 64, "activation": "tanh"}
# 2 examples x 6 logits = 12 rows: Lanczos' 128 steps span the space, so the spectrum is exact
_SMALL = dict(batch=2, input_shape=(4, 4, 3), num_classes=6, data="digits", seed=1)


@pytest.fixture(scope="module")
def both():
    with pytest.MonkeyPatch.context() as mp:
        shrink_mlp(mp)
        exact = scoring.score("mlp", _CONFIG, **_SMALL)
        free = scoring.score("mlp", _CONFIG, matrix_free_above=8, **_SMALL)
    return exact, free


def test_above_the_threshold_the_kernel_is_not_formed(both):
    exact, free = both
    assert exact.spectrum == "exact" and exact.method != free.method
    assert free.method == "ntk_vector_products (matrix-free)"
    assert free.spectrum.startswith("matrix-free: Lanczos 12 steps (exact)")
    assert free.as_dict()["spectrum"] == free.spectrum


def test_matrix_free_proxies_equal_the_formed_kernels(both):
    exact, free = both
    assert list(free.kernel_proxies) == list(exact.kernel_proxies)
    for name, value in free.kernel_proxies.items():
        if name.startswith("pntk_") or name == "ntk_corr_cond":
            assert math.isnan(value) and name in free.spectrum
        else:
            tol = 0.05 if name == "ntk_cond" else 1e-3
            assert value == pytest.approx(exact[name], rel=tol), name
    assert free.params == exact.params and free.flops == exact.flops


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "9"])
def test_a_bad_threshold_is_a_value_error(bad):
    with pytest.raises(ValueError, match="matrix_free_above"):
        scoring.ScoreOptions(matrix_free_above=bad)
