"""Structured derivatives on small Flax models: ViT, MLP-Mixer, ResNet with BatchNorm (inference),
a NAS-Bench-201-style cell network with BatchNorm on batch statistics; and (slow) on the
project's search spaces, with the NAS-Bench-201 network in both BatchNorm modes."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from ._reference import check_all


class ViT(nn.Module):
    dim: int = 8
    heads: int = 2
    patch: int = 4

    @nn.compact
    def __call__(self, x):
        n = x.shape[0]
        x = nn.Conv(self.dim, (self.patch, self.patch), strides=self.patch, padding="VALID")(x)
        x = x.reshape(n, -1, self.dim)
        cls = self.param("cls", nn.initializers.normal(0.5), (1, 1, self.dim))
        x = jnp.concatenate([jnp.broadcast_to(cls, (n, 1, self.dim)), x], axis=1)
        x = x + self.param("pos", nn.initializers.normal(0.1), (1, x.shape[1], self.dim))
        h = nn.LayerNorm()(x)
        x = x + nn.MultiHeadDotProductAttention(num_heads=self.heads)(h, h)
        h = nn.LayerNorm()(x)
        x = x + nn.Dense(self.dim)(nn.gelu(nn.Dense(2 * self.dim)(h)))
        return nn.Dense(3)(nn.LayerNorm()(x)[:, 0])


class Mixer(nn.Module):
    dim: int = 6
    patch: int = 4

    @nn.compact
    def __call__(self, x):
        n = x.shape[0]
        x = nn.Conv(self.dim, (self.patch, self.patch), strides=self.patch)(x).reshape(
            n, -1, self.dim
        )
        y = nn.LayerNorm()(x).swapaxes(1, 2)
        y = nn.Dense(x.shape[1])(nn.gelu(nn.Dense(5)(y))).swapaxes(1, 2)
        x = x + y
        x = x + nn.Dense(self.dim)(nn.gelu(nn.Dense(7)(nn.LayerNorm()(x))))
        return nn.Dense(3)(nn.LayerNorm()(x).mean(1))


class ResNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        bn = lambda: nn.BatchNorm(use_running_average=True)  # noqa: E731
        x = nn.relu(bn()(nn.Conv(4, (3, 3), use_bias=False)(x)))
        for stride, feats in ((1, 4), (2, 6)):
            h = nn.relu(bn()(nn.Conv(feats, (3, 3), strides=stride, use_bias=False)(x)))
            h = bn()(nn.Conv(feats, (3, 3), use_bias=False)(h))
            if stride != 1 or feats != x.shape[-1]:
                x = bn()(nn.Conv(feats, (1, 1), strides=stride, use_bias=False)(x))
            x = nn.relu(x + h)
        return nn.Dense(3)(x.mean((1, 2)))


class NB201Cell(nn.Module):
    """Edges 0->1, 0->2, 1->2, 0->3, 1->3, 2->3 with ops conv3x3, conv1x1, avgpool, skip, zero."""

    ops: tuple = ("conv3", "avg", "conv1", "skip", "conv3", "zero")
    train: bool = False  # BatchNorm on batch statistics (examples coupled) instead of running

    @nn.compact
    def __call__(self, x):
        def op(name, h):
            if name == "zero":
                return jnp.zeros_like(h)
            if name == "skip":
                return h
            if name == "avg":
                return nn.avg_pool(h, (3, 3), (1, 1), "SAME", count_include_pad=False)
            k = 3 if name == "conv3" else 1
            h = nn.Conv(h.shape[-1], (k, k), use_bias=False)(nn.relu(h))
            return nn.BatchNorm(use_running_average=not self.train)(h)

        nodes = [x]
        edges = iter(self.ops)
        for j in range(1, 4):
            nodes.append(sum(op(next(edges), nodes[i]) for i in range(j)))
        return nodes[-1]


class NB201Net(nn.Module):
    train: bool = False

    @nn.compact
    def __call__(self, x):
        bn = lambda: nn.BatchNorm(use_running_average=not self.train)  # noqa: E731
        x = bn()(nn.Conv(4, (3, 3), use_bias=False)(x))
        x = NB201Cell(train=self.train)(x)
        x = nn.Conv(6, (3, 3), strides=2, use_bias=False)(nn.relu(x))
        x = NB201Cell(("skip", "conv1", "avg", "conv3", "zero", "conv1"), self.train)(x)
        return nn.Dense(3)(nn.relu(bn()(x)).mean((1, 2)))


MODELS = {"vit": ViT, "mixer": Mixer, "resnet_bn": ResNet, "nb201": NB201Net}


def _setup(model, shape=(8, 8, 3), dtype=jnp.float64, train=False):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    x1 = jax.random.normal(k1, (3, *shape), dtype)
    x2 = jax.random.normal(k2, (2, *shape), dtype)
    variables = model.init(k3, x1)
    variables = jax.tree.map(lambda a: a.astype(dtype), variables)
    params = variables["params"]
    # Randomize BatchNorm statistics and scales so the test cannot pass by symmetry.
    rest = {k: v for k, v in variables.items() if k != "params"}
    rest = jax.tree.map(lambda a: a + 0.3 * jax.random.uniform(k3, a.shape, dtype), rest)

    def f(p, x):
        if train:  # batch statistics; the updated running averages are dropped
            return model.apply({"params": p, **rest}, x, mutable=["batch_stats"])[0]
        return model.apply({"params": p, **rest}, x)

    return f, params, x1, x2


@pytest.mark.parametrize("name", sorted(MODELS))
def test_flax_model(name):
    """The NB201-style net runs with BatchNorm on batch statistics: the examples are coupled, so
    vmap_axes=None (ResNet covers BatchNorm in inference mode, vmapped)."""
    train = name == "nb201"
    f, params, x1, x2 = _setup(MODELS[name](train=train) if train else MODELS[name](), train=train)
    check_all(f, x1, x2, params, against_jc=name == "vit", vmap_axes=None if train else 0)


def test_flax_vit_float32_traced():
    f, params, x1, x2 = _setup(ViT(), dtype=jnp.float32)
    check_all(f, x1, x2, params, dtype=jnp.float32, against_jc=False, trace_axes=(-1,))


@pytest.mark.slow
@pytest.mark.parametrize("train", [False, True])
def test_nb201_space_cell_both_bn_modes(train):
    """The search space's NAS-Bench-201 network, a cell with conv, avg-pool and zero edges."""
    search_spaces = pytest.importorskip("search_spaces")
    module = search_spaces.get_space("nb201").build(
        {"cell": "320140"}, num_classes=4, input_shape=(8, 8, 3)
    )
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(3), 3)
    x1 = jax.random.normal(k1, (2, 8, 8, 3), jnp.float64)
    x2 = jax.random.normal(k2, (3, 8, 8, 3), jnp.float64)
    variables = jax.tree.map(lambda a: a.astype(jnp.float64), module.init(k3, x1))
    params = variables["params"]
    state = {k: v for k, v in variables.items() if k != "params"}

    def f(p, xs):
        x, s = xs
        if train:
            return module.apply({"params": p, **s}, x, train=True, mutable=["batch_stats"])[0]
        return module.apply({"params": p, **s}, x)

    vmap_axes = None if train else ((0, None), 0)
    check_all(f, (x1, state), (x2, state), params, against_jc=False, vmap_axes=vmap_axes)


@pytest.mark.slow
@pytest.mark.parametrize("space_name", ["vit-tiny", "mlp-mixer", "resnet", "nb201", "mlp"])
def test_search_space_models(space_name):
    search_spaces = pytest.importorskip("search_spaces")
    space = search_spaces.get_space(space_name)
    config = next(iter(_configs(space)))
    shape = (16, 16, 3) if space_name != "mlp" else (8, 8, 1)
    module = space.build(config, num_classes=4, input_shape=shape)
    f, params, x1, x2 = _setup(module, shape)
    check_all(f, x1[:2], x2[:1], params)


def _configs(space):
    try:
        yield from space.enumerate()
    except TypeError:
        import optuna

        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        yield space.suggest(study.ask())
