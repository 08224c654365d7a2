"""The checks the masked shared-graph tests share (test_shared_masked.py, test_shared_vit.py).

A config's own network and the shared graph are compared in float64 on the same inputs. The
graph's kernel takes the architecture as an input, as scoring passes it, and is compiled once per
graph, BatchNorm mode and method: every config of one graph reuses the program.
"""

import jax
import jax.numpy as jnp
import numpy as np

from ntknas import ntk

JC, SD = "jacobian_contraction", "structured_derivatives"


def f64(tree):
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)


def assert_close(got, want):
    scale = float(jnp.max(jnp.abs(want)))
    assert scale > 0
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=1e-6 * scale)


def _make_kernel_fn(module, train: bool, method: str, masked: bool):
    def f(params, xs):
        x, state, *arch = xs
        if train:
            return module.apply(
                {**state, "params": params}, x, *arch, train=True, mutable=["batch_stats"]
            )[0]
        return module.apply({**state, "params": params}, x, *arch)

    vmap_axes = None if train else ((0, None, None) if masked else (0, None), 0)
    return ntk.ntk_fn(f, method, vmap_axes=vmap_axes)


_GRAPH_KERNELS: dict = {}  # (id(module), train, method) -> (module, kernel_fn); holds the module


def ntk_of(module, variables, x, arch=None, *, train=False, method=JC):
    """The NTK (x against itself) of ``module`` at ``variables``; with ``arch``, of the masked
    graph ``module`` for that architecture (its kernel function cached per graph)."""
    state = {k: v for k, v in variables.items() if k != "params"}
    if arch is None:
        fn, xs = _make_kernel_fn(module, train, method, False), (x, state)
    else:
        key = (id(module), train, method)
        if key not in _GRAPH_KERNELS or _GRAPH_KERNELS[key][0] is not module:
            _GRAPH_KERNELS[key] = (module, _make_kernel_fn(module, train, method, True))
        fn, xs = _GRAPH_KERNELS[key][1], (x, state, arch)
    return fn(xs, None, variables["params"])


def own_variables(space, config, num_classes, shape, x):
    """The config's own network and its float64 variables, moved off their init values (so no
    zero bias or unit scale can hide a wrong mask)."""
    own_module = space.build(config, num_classes, shape)
    own = f64(jax.jit(own_module.init)(jax.random.PRNGKey(0), x))
    own = jax.tree.map(lambda a: a + 0.1 * jnp.sin(jnp.arange(a.size).reshape(a.shape)), own)
    return own_module, own


def assert_select_is_own(graph, shared, own, config):
    """``select`` gives the own tree and shapes (the own parameter count) and values."""
    picked = graph.select(shared, config)
    assert jax.tree.structure(picked) == jax.tree.structure(own)
    for a, b in zip(jax.tree.leaves(picked), jax.tree.leaves(own), strict=True):
        np.testing.assert_array_equal(a, b)


def assert_graph_gives_own_kernel(graph, config, own_module, own, x, modes=(False,)):
    """The own variables embedded into the graph (zeros elsewhere): ``select`` gives them back,
    and the graph's NTK by Jacobian contraction and by structured derivatives is the own network's
    (Jacobian contraction; 1e-6 relative) in each BatchNorm mode (``train``) of ``modes``."""
    shared = graph.embed(own, config)
    assert_select_is_own(graph, shared, own, config)
    arch = jnp.asarray(graph.encode(config), jnp.float64)
    for train in modes:
        want = ntk_of(own_module, own, x, train=train)
        assert float(jnp.min(jnp.abs(want))) > 0  # every entry is data: the test can fail
        for method in (JC, SD):
            assert_close(ntk_of(graph.module, shared, x, arch, train=train, method=method), want)


def assert_init_own_in_place(graph, config, own, variables, x, outside_drawn=False):
    """``init_own``'s variables: the own tree, shapes and dtypes; the own zeros and ones where the
    own init has constants; values outside the config's part (nonzero somewhere, if the graph's
    init draws them: ``outside_drawn``) change nothing: the graph's kernel at them is the kernel
    at their embedded own part, zeros elsewhere."""
    picked = graph.select(variables, config)
    assert jax.tree.structure(picked) == jax.tree.structure(own)
    for a, b in zip(jax.tree.leaves(picked), jax.tree.leaves(own), strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        if b.size > 1 and bool(jnp.all(b == b.reshape(-1)[0])):  # constant: bias, norm, stats
            np.testing.assert_array_equal(a, b)
    arch = jnp.asarray(graph.encode(config), jnp.float64)
    tidy = f64(graph.embed(picked, config))  # zeros outside
    outside = jax.tree.map(lambda v, t: v - t, f64(variables), tidy)
    if outside_drawn:
        assert any(float(jnp.max(jnp.abs(a))) > 0 for a in jax.tree.leaves(outside))
    assert_close(ntk_of(graph.module, f64(variables), x, arch), ntk_of(graph.module, tidy, x, arch))
