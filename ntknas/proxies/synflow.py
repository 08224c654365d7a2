"""SynFlow (Tanaka et al., 2020) as a zero-cost proxy (Abdelfattah et al., 2021): a reference.

``Σ_θ |θ ⊙ ∂R/∂θ|`` over the weights of conv and dense layers, where ``R`` is the sum of the
outputs of the network with every parameter replaced by its absolute value, fed one all-ones
input. As in the zero-cost-proxy code, BatchNorm is off: the module runs in inference mode on its
initial statistics (mean 0, variance 1), which is the identity up to a factor ``(1 + ε)^(-1/2)``
per layer (ε = 1e-5), and BatchNorm's own parameters are not summed. Only leaves named ``kernel``
(conv and dense weights; Flax's name) count, as only ``Conv2d``/``Linear`` weights do there.

The products grow exponentially with depth, so compute in float64 (``jax_enable_x64``).

Example:
  >>> fn = synflow_fn(module, input_shape)
  >>> fn(params, state)                 # a float
"""

from __future__ import annotations


def synflow_fn(module, input_shape, dtype=None):
    """``fn(params, state, *arch) -> float``: the SynFlow score, jitted once per module and shape.

    Args:
      module: a Flax module, ``__call__(x, *arch, train=False)``.
      input_shape: (H, W, C) of one example.
      dtype: of the computation; default float64 when ``jax_enable_x64`` is on, else float32.
    """
    import jax.numpy as jnp

    def reduce(flat):
        terms = [
            jnp.sum(jnp.abs(w * g))
            for path, w, g in flat
            if getattr(path[-1], "key", None) == "kernel"
        ]
        return sum(terms[1:], terms[0]) if terms else jnp.zeros(())

    score = positive_pass_fn(module, input_shape, reduce, dtype)

    def fn(params, state, *arch) -> float:
        return float(score(params, state, *arch))

    return fn


def positive_pass_fn(module, input_shape, reduce, dtype=None):
    """``score(params, state, *arch)``: ``reduce`` of SynFlow's pass, jitted once.

    The pass: every parameter replaced by its absolute value ``|θ|``, one all-ones input, ``R``
    the sum of the outputs, and ``g = ∂R/∂|θ|``.

    Args:
      module, input_shape, dtype: as for :func:`synflow_fn`.
      reduce: ``reduce([(path, |θ|, g) for every parameter leaf])`` (jax key paths) -> any
        pytree of arrays, what ``score`` returns.
    """
    import jax
    import jax.numpy as jnp

    if dtype is None:
        dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32

    @jax.jit
    def score(params, state, *arch):
        cast = lambda t: jax.tree.map(lambda a: jnp.asarray(a, dtype), t)  # noqa: E731
        params, state = cast(params), cast(state)
        arch = tuple(jnp.asarray(a, dtype) for a in arch)
        x = jnp.ones((1, *input_shape), dtype)

        def total(p):
            return jnp.sum(module.apply({"params": p, **state}, x, *arch))

        positive = jax.tree.map(jnp.abs, params)
        grads = jax.grad(total)(positive)
        flat = jax.tree_util.tree_flatten_with_path(positive)[0]
        leaves = [(path, w, g) for (path, w), g in zip(flat, jax.tree.leaves(grads), strict=True)]
        return reduce(leaves)

    return score
