"""The public surface: errors, explain/auto, jit, the NTK-vector-product operator, pseudo-NTKs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntknas import ntk
from ntknas.ntk._switches import switched

from . import zoo
from .test_methods import assert_close


@pytest.fixture(scope="module")
def fcn():
    return zoo.relu_fcn(np.float64)


# --- bad calls ---------------------------------------------------------------------------------


def test_unknown_method_names_the_choices(fcn):
    with pytest.raises(ValueError, match="unknown NTK method 'fast'.*jacobian_contraction"):
        ntk.ntk_fn(fcn.f, method="fast")


def test_method_accepts_enum_and_string(fcn):
    a = ntk.ntk_fn(fcn.f, method=ntk.NtkMethod.NTK_VECTOR_PRODUCTS)(fcn.x1, fcn.x2, fcn.params)
    b = ntk.ntk_fn(fcn.f, method="ntk_vector_products")(fcn.x1, fcn.x2, fcn.params)
    np.testing.assert_array_equal(a, b)
    assert ntk.NtkMethod("auto") is ntk.NtkMethod.AUTO and ntk.NtkMethod.AUTO == "auto"


def test_mismatched_input_shapes(fcn):
    bad = jnp.ones((2, 5))  # f expects 3 input features
    with pytest.raises(ValueError, match="f\\(params, x\\) failed"):
        ntk.ntk_fn(fcn.f)(fcn.x1, bad, fcn.params)


def test_non_array_leaves_are_named(fcn):
    with pytest.raises(TypeError, match=r"params\[1\] is a str"):
        ntk.ntk_fn(fcn.f)(fcn.x1, None, [fcn.params[0], "oops"] + fcn.params[2:])
    with pytest.raises(TypeError, match="x1.*is a list|x1"):
        ntk.ntk_fn(fcn.f)([object()], None, fcn.params)
    with pytest.raises(TypeError, match="params is required"):
        ntk.ntk_fn(fcn.f)(fcn.x1, fcn.x2)


def test_integer_params_are_rejected(fcn):
    with pytest.raises(TypeError, match="must be floating"):
        ntk.ntk_fn(fcn.f)(fcn.x1, None, [p.astype(jnp.int32) for p in fcn.params])


def test_axes_errors(fcn):
    with pytest.raises(ValueError, match="trace_axes contains axis 5"):
        ntk.ntk_fn(fcn.f, trace_axes=(5,))(fcn.x1, fcn.x2, fcn.params)
    with pytest.raises(ValueError, match="both trace_axes and diagonal_axes"):
        ntk.ntk_fn(fcn.f, trace_axes=(-1,), diagonal_axes=(1,))(fcn.x1, fcn.x2, fcn.params)
    with pytest.raises(ValueError, match="diagonal_axes but has size 3 on x1 and 2 on x2"):
        ntk.ntk_fn(fcn.f, diagonal_axes=(0,))(fcn.x1, fcn.x2, fcn.params)
    with pytest.raises(TypeError, match="vmap_axes"):
        ntk.ntk_fn(fcn.f, vmap_axes="batch")


def test_structure_mismatch_between_x1_and_x2(fcn):
    with pytest.raises(ValueError, match="same pytree structure"):
        ntk.ntk_fn(fcn.f)(fcn.x1, (fcn.x2,), fcn.params)


# --- auto / explain ----------------------------------------------------------------------------


def test_explain_reports_every_method_and_picks_the_cheapest(fcn):
    e = ntk.explain(fcn.f, fcn.x1, fcn.x2, fcn.params)
    assert {"jacobian_contraction", "ntk_vector_products"} <= set(e.estimates)
    for est in e.estimates.values():
        assert est.flops > 0 and est.bytes > 0 and est.source == "xla"
    assert e.method == min(e.estimates, key=lambda k: e.estimates[k].seconds)
    assert "auto ->" in str(e)


def test_explain_is_cached(fcn):
    with switched(auto_cache_size=8) as chooser:
        first = ntk.explain(fcn.f, fcn.x1, fcn.x2, fcn.params, trace_axes=(-1,))
        again = ntk.explain(fcn.f, fcn.x1 + 1.0, fcn.x2 * 2.0, fcn.params, trace_axes=(-1,))
        assert again is first  # same shapes: the cached choice, nothing lowered or costed
        assert len(chooser.keys()) == 1


def test_explain_cache_keeps_only_the_newest(fcn):
    fs = [lambda p, x, k=k: fcn.f(p, x) * k for k in (1.0, 2.0, 3.0)]  # three distinct functions
    with switched(auto_cache_size=2) as chooser:
        for f in fs:
            ntk.explain(f, fcn.x1, fcn.x2, fcn.params)
        assert [key[0] for key in chooser.keys()] == fs[1:]  # the oldest went first


def test_compile_reuses_the_choice_and_explain_reads_it(fcn):
    """The hand-off scoring relies on: compile() chooses and compiles, explain() is then free."""
    with switched(auto_cache_size=8) as chooser:
        kernel_fn = ntk.ntk_fn(fcn.f)
        assert isinstance(kernel_fn, ntk.KernelFn) and kernel_fn.method is ntk.NtkMethod.AUTO
        exe = kernel_fn.compile(fcn.x1, None, fcn.params)
        assert len(chooser.keys()) == 1
        e = ntk.explain(fcn.f, fcn.x1, None, fcn.params)
        assert len(chooser.keys()) == 1 and e.method in e.estimates
        want = zoo.reference_kernel(fcn.f, fcn.params, fcn.x1, fcn.x1)
        assert_close(exe(fcn.x1, None, fcn.params), want, np.float64)


def test_compile_does_not_trace_the_chosen_method_again(fcn):
    traces = []

    def counted():  # a new function each time: no trace cached across the two runs
        return lambda p, x: (traces.append(1), fcn.f(p, x))[1]

    with switched(auto_cache_size=8):
        ntk.explain(counted(), fcn.x1, fcn.x2, fcn.params)
    choosing, traces[:] = len(traces), []
    with switched(auto_cache_size=8):
        ntk.ntk_fn(counted()).compile(fcn.x1, fcn.x2, fcn.params)
    assert choosing > 0 and len(traces) == choosing


def test_auto_prefers_vector_products_for_wide_outputs():
    """Paper §3.5: for an FCN with many logits, NTK-vector products beat Jacobian contraction."""
    c = zoo.relu_fcn(np.float32, depth=4, width=64, o=64, n1=4, n2=4)
    e = ntk.explain(c.f, c.x1, c.x2, c.params)
    est = e.estimates
    assert est["ntk_vector_products"].flops < est["jacobian_contraction"].flops
    assert e.method != "jacobian_contraction"


def test_auto_kernel_jit_compiles(fcn):
    kernel_fn = ntk.ntk_fn(fcn.f, trace_axes=(-1,))
    jitted = jax.jit(lambda a, b, p: kernel_fn(a, b, p))
    got = jitted(fcn.x1, fcn.x2, fcn.params)
    assert_close(got, zoo.reference_kernel(fcn.f, fcn.params, fcn.x1, fcn.x2, (-1,)), np.float64)


# --- the NTK-vector-product operator -----------------------------------------------------------


@pytest.mark.parametrize("case", ["relu_fcn", "cnn_groups2", "pytrees"])
def test_ntk_vp_fn_matches_reference(case):
    c = {c.name: c for c in zoo.all_cases(np.float64)}[case]
    mvp = ntk.ntk_vp_fn(c.f)
    out2 = c.f(c.params, c.x2)
    keys = jax.random.split(jax.random.PRNGKey(7), len(jax.tree.leaves(out2)))
    v = jax.tree.unflatten(
        jax.tree.structure(out2),
        [jax.random.normal(k, o.shape) for k, o in zip(keys, jax.tree.leaves(out2))],
    )
    got = mvp(v, c.x1, c.x2, c.params)
    # Reference over the flattened concatenation of all output leaves (cross-leaf terms included).
    ravel = lambda t: jnp.concatenate([a.ravel() for a in jax.tree.leaves(t)])  # noqa: E731
    j1 = jax.jacrev(lambda p: ravel(c.f(p, c.x1)))(c.params)
    j2 = jax.jacrev(lambda p: ravel(c.f(p, c.x2)))(c.params)
    flat = lambda j, n: np.concatenate(
        [np.asarray(a).reshape(n, -1) for a in jax.tree.leaves(j)], 1
    )  # noqa: E731
    n1, n2 = ravel(c.f(c.params, c.x1)).size, ravel(out2).size
    want = flat(j1, n1) @ (flat(j2, n2).T @ np.asarray(ravel(v)))
    np.testing.assert_allclose(np.asarray(ravel(got)), want, rtol=1e-8, atol=1e-10)


def test_ntk_vp_fn_agrees_with_the_kernel_times_v(fcn):
    mvp = ntk.ntk_vp_fn(fcn.f)
    v = jax.random.normal(jax.random.PRNGKey(3), (3, 4))
    k = ntk.as_matrix(ntk.ntk_fn(fcn.f, method="jacobian_contraction")(fcn.x1, None, fcn.params))
    np.testing.assert_allclose(mvp(v, fcn.x1, None, fcn.params).ravel(), k @ v.ravel(), rtol=1e-8)


def _counting(f):
    """``f`` and a list that grows by one each time ``f`` is traced (or called)."""
    traces = []

    def counted(p, x):
        traces.append(1)
        return f(p, x)

    return counted, traces


def test_ntk_vp_fn_is_compiled_once_for_new_params_and_inputs(fcn):
    """Parameters and inputs are arguments: new values reuse the compiled program."""
    f, traces = _counting(fcn.f)
    mvp = ntk.ntk_vp_fn(f)
    v = jax.random.normal(jax.random.PRNGKey(3), (3, 4))
    mvp(v, fcn.x1, None, fcn.params)
    n = len(traces)
    params2 = [w * 1.5 for w in fcn.params]
    got = mvp(v, fcn.x1 + 1.0, None, params2)
    assert len(traces) == n
    k = ntk.as_matrix(ntk.ntk_fn(fcn.f)(fcn.x1 + 1.0, None, params2))
    np.testing.assert_allclose(got.ravel(), k @ v.ravel(), rtol=1e-8)


def test_ntk_vp_fn_rejects_wrong_shapes(fcn):
    mvp = ntk.ntk_vp_fn(fcn.f)
    with pytest.raises(ValueError, match="shape"):
        mvp(jnp.ones((3, 4)), fcn.x1, fcn.x2, fcn.params)  # v must be shaped like f(.., x2)


# --- pseudo-NTKs and as_matrix -----------------------------------------------------------------


def test_pseudo_kernels_follow_their_formulas(fcn):
    k = np.asarray(ntk.ntk_fn(fcn.f)(fcn.x1, fcn.x2, fcn.params))
    np.testing.assert_allclose(ntk.trace_kernel(k), np.einsum("abii->ab", k))
    np.testing.assert_allclose(ntk.single_logit_kernel(k, 2), k[:, :, 2, 2])
    np.testing.assert_allclose(ntk.sum_of_logits_kernel(k), k.sum((2, 3)))
    assert set(ntk.pseudo_kernels(k)) == set(ntk.PSEUDO_KINDS)


@pytest.mark.parametrize("kind", ["trace", "single_logit", "sum_of_logits"])
def test_pseudo_ntk_fn_matches_the_full_kernel(fcn, kind):
    full = ntk.ntk_fn(fcn.f)(fcn.x1, fcn.x2, fcn.params)
    want = ntk.pseudo_kernels(full, logit=1)[kind]
    got = ntk.pseudo_ntk_fn(fcn.f, kind, logit=1)(fcn.x1, fcn.x2, fcn.params)
    # The pseudo-NTK of a model is its own reference: explicit Jacobians of the reduced output.
    reduced = {
        "trace": None,
        "single_logit": lambda p, x: fcn.f(p, x)[..., 1],
        "sum_of_logits": lambda p, x: fcn.f(p, x).sum(-1),
    }[kind]
    ref = (
        zoo.reference_kernel(fcn.f, fcn.params, fcn.x1, fcn.x2, (-1,))
        if reduced is None
        else zoo.reference_kernel(reduced, fcn.params, fcn.x1, fcn.x2)
    )
    assert_close(got, ref, np.float64)
    assert_close(want, ref, np.float64)


def test_unknown_pseudo_kind(fcn):
    with pytest.raises(ValueError, match="unknown pseudo-NTK kind 'max'"):
        ntk.pseudo_ntk_fn(fcn.f, "max")


def test_as_matrix_layout():
    k = np.arange(2 * 3 * 4 * 4, dtype=float).reshape(2, 3, 4, 4)
    m = np.asarray(ntk.as_matrix(k))
    assert m.shape == (8, 12)
    assert m[1 * 4 + 2, 2 * 4 + 3] == k[1, 2, 2, 3]
    with pytest.raises(ValueError, match="N1, N2, O, O"):
        ntk.as_matrix(k[0])


def test_repeated_calls_do_not_trace_again(fcn):
    f, traces = _counting(fcn.f)
    kernel_fn = ntk.ntk_fn(f)
    first = kernel_fn(fcn.x1, fcn.x2, fcn.params)
    n = len(traces)
    assert n > 0
    second = kernel_fn(fcn.x1 * 0.5, fcn.x2 + 1.0, fcn.params)  # same shapes, new values
    assert len(traces) == n
    assert not np.allclose(first, second)
    assert_close(
        second, zoo.reference_kernel(fcn.f, fcn.params, fcn.x1 * 0.5, fcn.x2 + 1.0), np.float64
    )


def test_hopeless_methods_are_costed_by_the_model_without_tracing():
    """A wide FCN with many logits: the Jacobian is far behind and is not lowered at all."""
    c = zoo.relu_fcn(np.float32, depth=4, width=256, o=32, n1=4, n2=4)
    e = ntk.explain(c.f, c.x1, c.x2, c.params)
    assert e.method == "structured_derivatives"
    assert e.estimates["structured_derivatives"].source == "xla"
    jc = e.estimates["jacobian_contraction"]
    assert jc.source == "model" and jc.seconds > 2 * e.estimates[e.method].seconds
