"""NtkMethod and what every method shares: input checks, output shapes, the per-leaf dispatch.

Both the public surface (:mod:`._api`) and the automatic choice (:mod:`._auto`) build on these.
"""

from __future__ import annotations

import enum
import functools
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

from . import _conv_patches, _jacobian, _param_blocks, _vector_products, structured
from ._axes import OutputAxes
from ._batching import Batching
from ._blocks import Blocking
from ._dtypes import PRECISIONS, is_floating, matmul_precision, promote_half


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
    NtkMethod.STRUCTURED_DERIVATIVES: structured.leaf_kernel,
}


# Methods whose convolution kernel derivatives become patch contractions (see _conv_patches):
# Jacobian contraction only. NTK-vector products spend their time in forward convolutions, which
# the rewrite does not speed up, and would only carry the patches as extra residuals (README,
# "Against the reference implementation", has the figures).
_PATCHED = frozenset({NtkMethod.JACOBIAN_CONTRACTION})


def parse_method(method) -> NtkMethod:
    try:
        return NtkMethod(method)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in NtkMethod)
        raise ValueError(f"unknown NTK method {method!r}; choose one of {allowed}") from None


@dataclass(frozen=True)
class Options:
    """What every method is told besides the function and the arrays (see ``ntk_fn``)."""

    trace_axes: Any = ()
    diagonal_axes: Any = ()
    vmap_axes: Any = 0
    precision: str = "highest"
    memory_budget: float | None = None  # bytes; None: a fraction of the device's memory
    block_size: int | None = None  # output basis vectors at once; None: from memory_budget
    shard: bool = False  # x1's examples split over all local devices (shard_map)
    # a kernel per parameter block (see _param_blocks): a function of a path, or (name, predicate)s
    param_blocks: Any = None

    def __post_init__(self):
        if self.block_size is not None and not (
            isinstance(self.block_size, int) and self.block_size >= 1
        ):
            raise ValueError(f"block_size must be a positive int or None, got {self.block_size!r}")
        if self.memory_budget is not None and not self.memory_budget > 0:
            raise ValueError(
                f"memory_budget must be a positive number of bytes, got {self.memory_budget!r}"
            )
        if self.precision not in PRECISIONS:
            allowed = ", ".join(repr(p) for p in PRECISIONS)
            raise ValueError(f"unknown precision {self.precision!r}; choose one of {allowed}")
        Batching.make(self.vmap_axes)  # raises on a malformed vmap_axes
        object.__setattr__(self, "param_blocks", _param_blocks.normalize(self.param_blocks))

    @property
    def batching(self) -> Batching:
        return Batching.make(self.vmap_axes)

    def key(self) -> tuple:
        return (
            tuple(np.atleast_1d(self.trace_axes).tolist()),
            tuple(np.atleast_1d(self.diagonal_axes).tolist()),
            repr(self.vmap_axes),
            self.precision,
            self.memory_budget,
            self.block_size,
            self.shard,
            self.param_blocks,
        )


# Default memory budgets: a fraction of what the device can hold (accelerators: XLA's allocator
# limit, which already leaves room for the runtime; CPU: physical memory, shared with the rest of
# the process and the machine).
_BUDGET_FRACTION = {"cpu": 0.5, "accelerator": 0.9}


def memory_budget(options: Options) -> float:
    """The memory budget in bytes: ``options.memory_budget``, or the device's default."""
    if options.memory_budget is not None:
        return float(options.memory_budget)
    return (
        device_memory()
        * _BUDGET_FRACTION["cpu" if jax.default_backend() == "cpu" else "accelerator"]
    )


def device_memory() -> float:
    """Bytes the first local device can hold (CPU: physical memory; inf if nothing says)."""
    device = jax.local_devices()[0]
    stats = None
    try:
        stats = device.memory_stats()
    except Exception:  # not every backend reports memory statistics
        stats = None
    if stats and stats.get("bytes_limit"):
        return float(stats["bytes_limit"])
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return math.inf


def check_arrays(tree, name: str) -> None:
    """Raises TypeError naming the first leaf of ``tree`` that is not an array (or not float)."""
    if tree is None:
        raise TypeError(f"{name} is required")
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if not (hasattr(leaf, "shape") and hasattr(leaf, "dtype")):
            where = jax.tree_util.keystr(path) or "(root)"
            raise TypeError(f"{name}{where} is a {type(leaf).__name__}, not an array")
        if name == "params" and not is_floating(leaf.dtype):
            where = jax.tree_util.keystr(path) or "(root)"
            raise TypeError(f"params{where} has dtype {leaf.dtype}; parameters must be floating")


def output_shapes(f, x1, x2, params):
    try:
        out1 = jax.eval_shape(f, params, x1)
        out2 = out1 if x2 is None else jax.eval_shape(f, params, x2)
    except Exception as e:  # the user's function failed on these shapes: say so plainly
        raise ValueError(f"f(params, x) failed on the given shapes: {type(e).__name__}: {e}") from e
    if jax.tree.structure(out1) != jax.tree.structure(out2):
        raise ValueError("f returns differently structured outputs on x1 and x2")
    return out1, out2


# Private switches (tests only, flipped by ntknas.ntk._switches.switched): methods that raise
# when traced, and methods whose compiled kernel raises when it runs (as an out-of-memory error
# at execution would: lowering, compiling and memory analysis all succeed).
FAILING: frozenset = frozenset()
FAILING_AT_RUN: frozenset = frozenset()


def compute(f, method: NtkMethod, options: Options, x1, x2, params):
    """The kernel of every output leaf of ``f`` by one (concrete, not auto) method; with
    ``options.param_blocks``, ``{block name: kernel}`` (each the kernel w.r.t. that block).

    Contractions run at ``options.precision`` (whatever ``jax_default_matmul_precision`` says
    outside); half-precision parameters and inputs are promoted to float32 first, so the kernel
    is accumulated, and returned, in float32.
    """
    if method.value in FAILING:
        raise RuntimeError(f"{method.value} is switched off (a test of auto's fallback)")
    with matmul_precision(options.precision):
        args = promote_half((x1, x2, params))
        if options.param_blocks is None:
            kernels = _compute(f, method, options, *args)
        elif method is NtkMethod.STRUCTURED_DERIVATIVES:
            # one linearization and backward pass for every block: the pairs of terms are
            # summed per block of their parameter (the other methods take a kernel per block)
            groups = _param_blocks.assign(options.param_blocks, args[2])
            kernels = _compute(f, method, options, *args, groups=groups)
        else:
            one = functools.partial(_compute, method=method)
            kernels = _param_blocks.block_kernels(one, f, options, *args)
    if method.value in FAILING_AT_RUN:
        kernels = jax.tree.map(functools.partial(_fails_when_run, method.value), kernels)
    return kernels


def _fails_when_run(method: str, kernel):
    """``kernel`` passed through a host callback that raises when the compiled program runs."""

    def fail(_):
        raise RuntimeError(
            f"RESOURCE_EXHAUSTED: {method} is switched off at run time "
            "(a test of auto's run-time fallback)"
        )

    out = jax.ShapeDtypeStruct(kernel.shape, kernel.dtype)
    return jax.pure_callback(fail, out, kernel, vmap_method="sequential")


def _compute(f, method: NtkMethod, options: Options, x1, x2, params, groups=None):
    """The kernel tree of ``f``; with ``groups`` (structured derivatives only, see
    :func:`.structured.leaf_kernel`), ``{block name: kernel tree}``."""
    trace_axes, diagonal_axes, batching = (
        options.trace_axes,
        options.diagonal_axes,
        options.batching,
    )
    out1, out2 = output_shapes(f, x1, x2, params)
    leaves1, tree = jax.tree.flatten(out1)
    leaves2 = jax.tree.leaves(out2)
    impl = _IMPLS[method]
    if method in _PATCHED:
        f = _conv_patches.patch_convs(f)
    # Half the budget for the blocks of basis vectors; the rest for what they share (residuals
    # of the linearization, factors, the kernel itself).
    blocking = Blocking(memory_budget(options) / 2, options.block_size)
    kernels = []
    for i, (o1, o2) in enumerate(zip(leaves1, leaves2, strict=True)):
        axes = OutputAxes.make(o1.ndim, trace_axes, diagonal_axes)
        axes.check_shapes(o1.shape, o2.shape)
        if batching.batched:
            batching.out_axis_for(o1.ndim)
        f_i = f if tree.num_leaves == 1 and tree == jax.tree.structure(0) else _leaf_fn(f, i)
        extra = {} if groups is None else {"groups": groups}
        kernels.append(impl(f_i, x1, x2, params, axes, batching, blocking, **extra))
    if groups is None:
        return jax.tree.unflatten(tree, kernels)
    return {name: jax.tree.unflatten(tree, [k[name] for k in kernels]) for name in groups}


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


def cache_key(f, options: Options, x1, x2, params) -> Any:
    """A hashable key of (f, options, shapes, dtypes, backend), or None if ``f`` is not hashable."""
    key = (
        f,
        options.key(),
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
