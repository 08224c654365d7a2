"""The public surface of the NTK engine: ntk_fn, explain, NtkMethod, as_matrix."""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from . import _auto, _jacobian, _jax_compat, _vector_products, structured
from ._axes import OutputAxes
from ._batching import Batching


class NtkMethod(str, enum.Enum):
    """How the NTK is computed (paper §3).

    - ``JACOBIAN_CONTRACTION``: instantiate both Jacobians and contract them (the reference).
    - ``NTK_VECTOR_PRODUCTS``: apply v ↦ J1 J2ᵀ v (one VJP + one JVP) to every basis vector.
    - ``STRUCTURED_DERIVATIVES``: contract ∂f/∂y with structured ∂y/∂θ per primitive.
    - ``AUTO``: estimate each method's cost for the given shapes and run the cheapest.
    """

    JACOBIAN_CONTRACTION = "jacobian_contraction"
    NTK_VECTOR_PRODUCTS = "ntk_vector_products"
    STRUCTURED_DERIVATIVES = "structured_derivatives"
    AUTO = "auto"


_IMPLS: dict[NtkMethod, Callable] = {
    NtkMethod.JACOBIAN_CONTRACTION: _jacobian.leaf_kernel,
    NtkMethod.NTK_VECTOR_PRODUCTS: _vector_products.leaf_kernel,
    NtkMethod.STRUCTURED_DERIVATIVES: lambda *a, **k: structured.leaf_kernel(*a, **k),
}


def _parse_method(method) -> NtkMethod:
    try:
        return NtkMethod(method)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in NtkMethod)
        raise ValueError(f"unknown NTK method {method!r}; choose one of {allowed}") from None


def _check_arrays(tree, name: str) -> None:
    if tree is None:
        raise TypeError(f"{name} is required")
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if not (hasattr(leaf, "shape") and hasattr(leaf, "dtype")):
            where = jax.tree_util.keystr(path) or "(root)"
            raise TypeError(f"{name}{where} is a {type(leaf).__name__}, not an array")
        if not np.issubdtype(np.dtype(leaf.dtype), np.inexact) and name == "params":
            where = jax.tree_util.keystr(path) or "(root)"
            raise TypeError(f"params{where} has dtype {leaf.dtype}; parameters must be floating")


def _output_shapes(f, x1, x2, params):
    try:
        out1 = jax.eval_shape(f, params, x1)
        out2 = out1 if x2 is None else jax.eval_shape(f, params, x2)
    except Exception as e:  # the user's function failed on these shapes: say so plainly
        raise ValueError(f"f(params, x) failed on the given shapes: {type(e).__name__}: {e}") from e
    if jax.tree.structure(out1) != jax.tree.structure(out2):
        raise ValueError("f returns differently structured outputs on x1 and x2")
    return out1, out2


def _compute(f, method: NtkMethod, trace_axes, diagonal_axes, batching: Batching, x1, x2, params):
    out1, out2 = _output_shapes(f, x1, x2, params)
    leaves1, tree = jax.tree.flatten(out1)
    leaves2 = jax.tree.leaves(out2)
    impl = _IMPLS[method]
    kernels = []
    for i, (o1, o2) in enumerate(zip(leaves1, leaves2, strict=True)):
        axes = OutputAxes.make(o1.ndim, trace_axes, diagonal_axes)
        axes.check_shapes(o1.shape, o2.shape)
        if batching.batched:
            batching.out_axis_for(o1.ndim)
        f_i = f if tree.num_leaves == 1 and tree == jax.tree.structure(0) else _leaf_fn(f, i)
        kernels.append(impl(f_i, x1, x2, params, axes, batching))
    return jax.tree.unflatten(tree, kernels)


def _leaf_fn(f, i):
    def f_i(params, x):
        return jax.tree.leaves(f(params, x))[i]

    return f_i


def _avals(t):
    if t is None:
        return None
    leaves, tree = jax.tree.flatten(t)
    return tree, tuple(
        (tuple(a.shape), str(a.dtype), bool(getattr(a, "weak_type", False))) for a in leaves
    )


def _cache_key(f, trace_axes, diagonal_axes, vmap_axes, x1, x2, params):
    key = (
        f,
        tuple(np.atleast_1d(trace_axes).tolist()),
        tuple(np.atleast_1d(diagonal_axes).tolist()),
        repr(vmap_axes),
        _avals(x1),
        _avals(x2),
        _avals(params),
        jax.default_backend(),
    )
    try:
        hash(key)
    except TypeError:
        return None
    return key


_EXPLAIN_CACHE: dict[Any, _auto.Explanation] = {}
# Keys hold the user's f (and so its closure, e.g. a model's variables): keep the newest few
# hundred choices, not every architecture a long search has seen.
_EXPLAIN_MAX = 256
# The chosen method's lowering, kept from explain() so that compiling it does not trace it again.
_LOWERED: dict[Any, Any] = {}
_LOWERED_MAX = 4
# Only close calls are lowered: a method whose model estimate exceeds this many times the best
# estimate so far is not traced at all.
_LOWER_WITHIN = 2.0


def explain(
    f: Callable, x1, x2, params, trace_axes=(), diagonal_axes=(), vmap_axes=0
) -> _auto.Explanation:
    """The method ``method="auto"`` picks for these shapes, with each method's estimated cost.

    Args:
      f, x1, x2, params, trace_axes, diagonal_axes, vmap_axes: as for :func:`ntk_fn`.

    Returns:
      An :class:`Explanation`: ``.method`` (the chosen :class:`NtkMethod` value) and
      ``.estimates`` (method -> FLOPs, bytes, estimated seconds, and where they came from:
      ``"xla"`` for XLA's cost analysis of the lowered method, ``"model"`` for the paper's cost
      model on XLA's forward-pass FLOPs where the method was too far behind to be worth lowering).
      Cached per (function, axes, shapes, dtypes): repeated calls cost nothing.
    """
    key = _cache_key(f, trace_axes, diagonal_axes, vmap_axes, x1, x2, params)
    if key is not None and key in _EXPLAIN_CACHE:
        return _EXPLAIN_CACHE[key]
    _check_arrays(params, "params")
    _check_arrays(x1, "x1")
    batching = Batching.make(vmap_axes)
    out1, _ = _output_shapes(f, x1, x2, params)
    args = (x1, x2, params)
    estimates, lowered = {}, {}

    def lower(m):
        fn = functools.partial(_compute, f, m, trace_axes, diagonal_axes, batching)
        try:
            lowered[m.value] = _auto.lower(fn, *args)
        except NotImplementedError as e:
            return _auto.Estimate(np.inf, np.inf, np.inf, f"error: {e}")
        return _auto.estimate_lowered(lowered[m.value], m.value)

    if structured.AVAILABLE:
        estimates[NtkMethod.STRUCTURED_DERIVATIVES.value] = lower(NtkMethod.STRUCTURED_DERIVATIVES)
    sizes = _sizes(f, x1, x2, params, out1, batching)
    for m in (NtkMethod.NTK_VECTOR_PRODUCTS, NtkMethod.JACOBIAN_CONTRACTION):
        flops, nbytes = _auto.model_cost(m.value, *sizes)
        est = _auto.estimate_model(flops, nbytes, m.value, "model")
        best = min((e.seconds for e in estimates.values()), default=np.inf)
        if est.seconds <= _LOWER_WITHIN * best:
            est = lower(m)
        estimates[m.value] = est
    result = _auto.Explanation(_auto.choose(estimates), estimates)
    if key is not None:
        while len(_EXPLAIN_CACHE) >= _EXPLAIN_MAX:
            _EXPLAIN_CACHE.pop(next(iter(_EXPLAIN_CACHE)))
        _EXPLAIN_CACHE[key] = result
        if result.method in lowered:
            # Only compiling pops an entry; explain() alone or the traced path would keep every
            # architecture's HLO module alive, so keep just the newest few.
            while len(_LOWERED) >= _LOWERED_MAX:
                _LOWERED.pop(next(iter(_LOWERED)))
            _LOWERED[key] = lowered[result.method]
    return result


def _sizes(f, x1, x2, params, out1, batching):
    """(N1, N2, O per example, P, [FP] per example, itemsize) for the cost model."""
    p = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(params))
    itemsize = max(np.dtype(o.dtype).itemsize for o in jax.tree.leaves(out1))
    total = sum(int(np.prod(o.shape)) for o in jax.tree.leaves(out1))
    n1 = batching.batch_size(x1) if batching.batched else 1
    n2 = n1 if x2 is None or not batching.batched else batching.batch_size(x2)
    cost = _auto.xla_cost(_auto.lower(f, params, x1))  # the forward pass on the x1 batch
    fp = cost[0] / n1 if cost and cost[0] > 0 else 2.0 * p  # no XLA count: ~2 FLOPs/param
    return n1, n2, total // n1, p, fp, itemsize


def ntk_fn(
    f: Callable,
    method: NtkMethod | str = NtkMethod.AUTO,
    trace_axes=(),
    diagonal_axes=(),
    vmap_axes=0,
) -> Callable:
    """The finite-width NTK of ``f`` as a function of two input batches and the parameters.

    ``Θ(x1, x2) = J(x1) J(x2)ᵀ`` with ``J = ∂f(params, x)/∂params``.

    Args:
      f: ``f(params, x)``, any differentiable JAX function; params, x and the output may be
        pytrees. Output leaves have the batch on ``vmap_axes`` (axis 0 by default).
      method: a :class:`NtkMethod` or its string value.
      trace_axes: output axes summed over (``(-1,)`` gives the standard pseudo-NTK).
      diagonal_axes: output axes of which only the diagonal is kept.
      vmap_axes: batch axis of inputs and outputs (int), ``None`` if examples are not
        independent (e.g. BatchNorm on batch statistics), or ``(in_axes, out_axis)``.

    Returns:
      ``kernel_fn(x1, x2=None, params)``; ``x2=None`` means ``x2 = x1``. Compiled kernels are
      cached per input shapes; ``kernel_fn.compile(x1, x2, params)`` compiles without running.
      For an output of shape ``(N, O)`` the kernel has shape ``(N1, N2, O, O)`` (``(N1, N2)``
      with ``trace_axes=(-1,)``, ``(N1, N2, O)`` with ``diagonal_axes=(-1,)``); for a pytree
      output, the matching pytree.

    Raises:
      ValueError: unknown method, axes out of range, outputs that do not match.
      TypeError: non-array leaves in params or inputs.

    Example:
      >>> kernel_fn = ntk_fn(lambda p, x: x @ p["w"], trace_axes=(-1,))
      >>> K = kernel_fn(x1, x2, {"w": w})   # (N1, N2)
    """
    method = _parse_method(method)
    batching = Batching.make(vmap_axes)
    if method is NtkMethod.STRUCTURED_DERIVATIVES and not structured.AVAILABLE:
        structured.leaf_kernel(None, None, None, None, None, None)  # raises NotImplementedError

    @jax.jit
    def run(x1, x2, params):
        m = _resolve(x1, x2, params)
        return _compute(f, m, trace_axes, diagonal_axes, batching, x1, x2, params)

    def _resolve(x1, x2, params) -> NtkMethod:
        if method is not NtkMethod.AUTO:
            return method
        return NtkMethod(explain(f, x1, x2, params, trace_axes, diagonal_axes, vmap_axes).method)

    executables: dict[Any, Any] = {}

    def compiled(x1, x2, params):
        """The compiled kernel for these shapes, reusing auto's lowering of the chosen method."""
        key = _cache_key(f, trace_axes, diagonal_axes, vmap_axes, x1, x2, params)
        if key is None:
            return None
        if key not in executables:
            m = _resolve(x1, x2, params)
            lowered = _LOWERED.pop(key, None) if method is NtkMethod.AUTO else None
            if lowered is None:
                fn = functools.partial(_compute, f, m, trace_axes, diagonal_axes, batching)
                lowered = _auto.lower(fn, x1, x2, params)
            executables[key] = lowered.compile()
        return executables[key]

    def kernel_fn(x1, x2=None, params=None):
        _check_arrays(params, "params")
        _check_arrays(x1, "x1")
        if x2 is not None:
            _check_arrays(x2, "x2")
            if jax.tree.structure(x1) != jax.tree.structure(x2):
                raise ValueError("x1 and x2 must have the same pytree structure")
        if _jax_compat.contains_tracer((x1, x2, params)):
            return run(x1, x2, params)  # inside the caller's jit/vmap: trace as usual
        exe = compiled(x1, x2, params)
        return run(x1, x2, params) if exe is None else exe(x1, x2, params)

    def compile_kernel(x1, x2=None, params=None):
        """Compiles (without running) the kernel for these shapes; returns the executable."""
        _check_arrays(params, "params")
        _check_arrays(x1, "x1")
        exe = compiled(x1, x2, params)
        if exe is None:
            raise TypeError("f is not hashable, so its compiled kernels cannot be cached")
        return exe

    kernel_fn.method = method
    kernel_fn.compile = compile_kernel
    return kernel_fn


def as_matrix(kernel):
    """The ``(N1·O) × (N2·O)`` matrix of an ``(N1, N2, O, O)`` kernel (row = (n1, o1))."""
    if kernel.ndim != 4:
        raise ValueError(f"as_matrix needs an (N1, N2, O, O) kernel, got shape {kernel.shape}")
    n1, n2, o1, o2 = kernel.shape
    return kernel.transpose(0, 2, 1, 3).reshape(n1 * o1, n2 * o2)
