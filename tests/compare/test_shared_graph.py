"""NB201's shared graph: each cell's slice of it is that cell's own network, parameters and NTK."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntknas import ntk
from ntknas.proxies import naswot, synflow
from ntknas.scoring import ScoreOptions, Scorer
from search_spaces import get_space, nb201
from tests.ntk.structured._reference import dense_fallbacks
from tests.search_spaces._shared import JC, SD, assert_close, f64, ntk_of

SHAPE = (8, 8, 3)
RNG = np.random.default_rng(11)
CELLS = ["230410", "111111", "000000"] + ["".join(RNG.choice(list("01234"), 6)) for _ in range(3)]


@pytest.fixture(scope="module")
def setup():
    space = get_space("nb201")
    graph = space.shared_graph(3, SHAPE)
    x = jax.random.normal(jax.random.PRNGKey(1), (3, *SHAPE), jnp.float64)
    return space, graph, x, graph.init(jax.random.PRNGKey(0), x)


def _arch(graph, cell):
    return jnp.asarray(graph.encode({"cell": cell}), jnp.float64)


@pytest.mark.parametrize("cell", CELLS)
def test_selected_variables_and_outputs_are_the_cells_own(setup, cell):
    space, graph, x, shared = setup
    module = space.build({"cell": cell}, num_classes=3, input_shape=SHAPE)
    own = module.init(jax.random.PRNGKey(0), x)
    picked = graph.select(shared, {"cell": cell})
    assert jax.tree.structure(picked) == jax.tree.structure(own)
    for a, b in zip(jax.tree.leaves(picked), jax.tree.leaves(own), strict=True):
        np.testing.assert_array_equal(a, b)
    for train in (False, True):
        kw = {"train": True, "mutable": ["batch_stats"]} if train else {}
        want = module.apply(own, x, **kw)
        got = graph.module.apply(shared, x, _arch(graph, cell), **kw)
        if train:  # batch statistics of unused ops do not reach the output
            want, got = want[0], got[0]
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


@pytest.mark.slow  # ~2 min per cell on 2 busy cores: the jitted shared graph compiles slowly
def test_naswot_and_synflow_through_the_shared_graph(setup):
    space, graph, x, shared = setup
    shared_naswot = naswot.naswot_fn(graph.module)
    shared_synflow = synflow.synflow_fn(graph.module, SHAPE)
    for cell in CELLS[:3]:
        module = space.build({"cell": cell}, num_classes=3, input_shape=SHAPE)
        own = module.init(jax.random.PRNGKey(0), x)
        arch = _arch(graph, cell)
        want = naswot.naswot_fn(module)(own, x)
        np.testing.assert_allclose(shared_naswot(shared, x, arch), want, rtol=1e-12)
        state = {"batch_stats": own["batch_stats"]}
        want = synflow.synflow_fn(module, SHAPE)(own["params"], state)
        got = shared_synflow(shared["params"], {"batch_stats": shared["batch_stats"]}, arch)
        assert got == pytest.approx(want, rel=1e-10)


@pytest.mark.slow
@pytest.mark.parametrize("bn", ["eval", "train"])
def test_shared_graph_kernel_equals_the_cells_own(setup, bn):
    """float64, Jacobian contraction: the kernel of each cell through the shared graph."""
    space, graph, x, shared = setup
    train = bn == "train"
    kw = {"train": True, "mutable": ["batch_stats"]} if train else {}
    axes = None if train else 0

    def out(module, variables, *arch):
        def f(params, inputs):
            y = module.apply({**variables, "params": params}, inputs, *arch, **kw)
            return y[0] if train else y

        return f

    for cell in CELLS[:4]:
        module = space.build({"cell": cell}, num_classes=3, input_shape=SHAPE)
        own = module.init(jax.random.PRNGKey(0), x)
        own = jax.tree.map(lambda a: a.astype(jnp.float64), own)
        sh = jax.tree.map(lambda a: a.astype(jnp.float64), shared)
        k_own = ntk.ntk_fn(out(module, own), "jacobian_contraction", vmap_axes=axes)(
            x, None, own["params"]
        )
        k_sh = ntk.ntk_fn(out(graph.module, sh, _arch(graph, cell)), "auto", vmap_axes=axes)(
            x, None, sh["params"]
        )
        scale = float(jnp.max(jnp.abs(k_own))) or 1.0
        np.testing.assert_allclose(k_sh, k_own, rtol=0, atol=1e-10 * scale)


@pytest.mark.slow
def test_scorer_shared_graph_matches_standalone_scores():
    opts = ScoreOptions(
        batch=2, input_shape=SHAPE, num_classes=3, bn="train", float64=True, data="digits"
    )
    fast, slow = Scorer(shared_graphs=True), Scorer()
    for cell in CELLS[:3]:
        a = fast.score("nb201", {"cell": cell}, opts)
        b = slow.score("nb201", {"cell": cell}, opts)
        assert a["params"] == b["params"] and a["flops"] == b["flops"]
        for name in ("ntk_trace", "ntk_eig_max", "pntk_sum_trace", "ntk_trace_per_param"):
            assert a[name] == pytest.approx(b[name], rel=1e-10), name


# no conv, 3x3 convs everywhere, and all five ops in one cell (c1 next to c3 on one node)
SHRUNK_CELLS = ["111111", "222222", "340123"]


def test_shared_kernel_is_the_own_kernel_by_every_method_without_dense_fallback(monkeypatch):
    """float64, nb201 shrunk to one cell a stage (each still holds all six edges) and 2-4
    channels: the graph's NTK by Jacobian contraction and structured derivatives (compiled once
    for all cells, the cell an input) equals the own network's by Jacobian contraction in both
    BatchNorm modes, and structured derivatives go through no dense rule."""
    monkeypatch.setattr(nb201, "STAGE_CHANNELS", (2, 3, 4))
    monkeypatch.setattr(nb201, "CELLS_PER_STAGE", 1)
    space = get_space("nb201")
    graph = space.shared_graph(2, SHAPE)
    x = jax.random.normal(jax.random.PRNGKey(3), (3, *SHAPE), jnp.float64)
    shared = f64(graph.init(jax.random.PRNGKey(0), x))
    # off the init values (unit scales, zero shifts and statistics): nothing hides a wrong mix
    shared = jax.tree.map(lambda a: a + 0.1 * jnp.sin(jnp.arange(a.size).reshape(a.shape)), shared)
    for train in (False, True):
        kernels = []
        for cell in SHRUNK_CELLS:
            config = {"cell": cell}
            own_module = space.build(config, num_classes=2, input_shape=SHAPE)
            want = ntk_of(own_module, graph.select(shared, config), x, train=train)
            # each cell's kernel is its own: far from every other's (the test can fail)
            scale = float(jnp.max(jnp.abs(want)))
            assert all(float(jnp.max(jnp.abs(want - k))) > 1e-3 * scale for k in kernels)
            kernels.append(want)
            arch = jnp.asarray(graph.encode(config), jnp.float64)
            got = ntk_of(graph.module, shared, x, arch, train=train, method=JC)
            assert_close(got, want)
            with dense_fallbacks() as dense:
                got = ntk_of(graph.module, shared, x, arch, train=train, method=SD)
            assert dense == [], f"dense fallback for {sorted(set(dense))}"
            assert_close(got, want)
