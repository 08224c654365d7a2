"""The public surface of the NTK engine: ntk_fn (returning a KernelFn), explain, as_matrix.

Shapes: an output leaf of ``f`` of shape ``(N, O)`` gives a kernel of shape ``(N1, N2, O, O)``
(``(N1, N2)`` with ``trace_axes=(-1,)``, ``(N1, N2, O)`` with ``diagonal_axes=(-1,)``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import jax
import numpy as np

from . import _auto, _compiled, _jax_compat
from ._batching import Batching
from ._cost import xla_cost
from ._kernel import NtkMethod, Options, cache_key, check_arrays, compute, parse_method

# Shape annotations (jaxtyping-style strings; jaxtyping itself is not a dependency).
Kernel = Annotated[jax.Array, "n1 n2 o1 o2"]  # fewer axes with trace_axes / diagonal_axes
KernelMatrix = Annotated[jax.Array, "n1*o1 n2*o2"]
Batch = Annotated[Any, "pytree of arrays, batch on vmap_axes"]


def explain(
    f: Callable,
    x1: Batch,
    x2: Batch | None,
    params,
    trace_axes=(),
    diagonal_axes=(),
    vmap_axes=0,
    precision: str = "highest",
    memory_budget: float | None = None,
    block_size: int | None = None,
    param_blocks=None,
) -> _auto.Explanation:
    """The method ``method="auto"`` picks for these shapes, with each method's estimated cost.

    Args:
      f, x1, x2, params, trace_axes, diagonal_axes, vmap_axes, precision, memory_budget,
        block_size, param_blocks: as for :func:`ntk_fn`.

    Returns:
      An :class:`Explanation`: ``.method`` (the chosen :class:`NtkMethod` value) and
      ``.estimates`` (method -> FLOPs, bytes, estimated seconds, and where they came from:
      ``"xla"`` for XLA's cost analysis of the lowered method, ``"model"`` for the paper's cost
      model on XLA's forward-pass FLOPs where the method was too far behind to be worth lowering),
      with each compiled method's peak memory, ``.skipped`` (method -> why it was not chosen:
      an error, or a peak over the memory budget) and ``.budget_bytes``. Cached per (function,
      options, shapes, dtypes): repeated calls cost nothing.
    """
    options = ntk_fn(
        f,
        NtkMethod.AUTO,
        trace_axes,
        diagonal_axes,
        vmap_axes,
        precision,
        memory_budget,
        block_size,
        param_blocks=param_blocks,
    ).options
    key = cache_key(f, options, x1, x2, params)
    return _auto.CHOOSER.choose(key, f, options, x1, x2, params).explanation


@dataclass(frozen=True, eq=False)
class KernelFn:
    """``kernel_fn(x1, x2=None, params)``: the NTK of ``f``, made by :func:`ntk_fn`.

    Compiled kernels are cached per input shapes; under the caller's ``jit``/``vmap`` the kernel
    is traced as usual. With ``method="auto"`` the automatic choice's executable of the chosen
    method is used as is, so nothing is traced or compiled twice; if it fails when it runs (e.g.
    out of memory at execution), the next method in auto's ranking is compiled and run instead,
    and :func:`explain` shows why the first was skipped.
    """

    f: Callable
    method: NtkMethod
    options: Options = Options()
    _run: Callable = field(init=False, repr=False)
    _executables: dict = field(init=False, repr=False, default_factory=dict)
    _blocks: dict = field(init=False, repr=False, default_factory=dict)  # key -> block size run

    def __post_init__(self):
        object.__setattr__(self, "_run", jax.jit(self._traced))

    def __call__(self, x1: Batch, x2: Batch | None = None, params=None) -> Kernel:
        """The kernel ``Θ(x1, x2)``; ``x2=None`` means ``x2 = x1``."""
        check_arrays(params, "params")
        check_arrays(x1, "x1")
        if x2 is not None:
            check_arrays(x2, "x2")
            if jax.tree.structure(x1) != jax.tree.structure(x2):
                raise ValueError("x1 and x2 must have the same pytree structure")
        if self._shardable(x1):
            return self._sharded(x1, x2, params)
        if _jax_compat.contains_tracer((x1, x2, params)):
            return self._run(x1, x2, params)  # inside the caller's jit/vmap: trace as usual
        exe = self._compiled(x1, x2, params)
        if exe is None:
            return self._run(x1, x2, params)
        if self.method is NtkMethod.AUTO:
            return self._run_auto(exe, x1, x2, params)
        return exe(x1, x2, params)

    def compile(self, x1: Batch, x2: Batch | None = None, params=None):
        """Compiles (without running) the kernel for these shapes; returns the executable."""
        check_arrays(params, "params")
        check_arrays(x1, "x1")
        exe = self._compiled(x1, x2, params)
        if exe is None:
            raise TypeError("f is not hashable, so its compiled kernels cannot be cached")
        return exe

    def flops(self, x1: Batch, x2: Batch | None = None, params=None) -> float:
        """XLA's FLOP count of the whole kernel for these shapes (NaN where XLA gives none).

        Counted on the program with every basis vector at once, whatever block size runs: a
        blocked kernel is a loop, and XLA's cost analysis counts a loop's body once, so a blocked
        program's own count would be one block's. Read off the compiled kernel when it is not
        blocked; otherwise the kernel is traced again without blocks (never compiled). With
        ``method="auto"``, the chosen method's.
        """
        check_arrays(params, "params")
        check_arrays(x1, "x1")
        key = self._key(x1, x2, params)
        if key is not None and self._blocks.get(key) == _compiled.UNBLOCKED:
            cost = xla_cost(self._executables[key])
            if cost is not None:
                return cost[0]
        m, options, _ = self._resolved(x1, x2, params)
        options = dataclasses.replace(options, block_size=_compiled.UNBLOCKED)
        cost = xla_cost(_compiled.lower(self._compute_fn(m, options), x1, x2, params))
        return float("nan") if cost is None else cost[0]

    def _run_auto(self, exe, x1, x2, params):
        """Runs auto's choice; when it fails as it runs, the next method in auto's ranking.

        The kernel is waited for, so that an error at execution (e.g. XLA's RESOURCE_EXHAUSTED
        when the device holds less than the compiled peak) surfaces here; the failed method is
        recorded as skipped in the explanation, and its executable replaced by the next one's.
        """
        key = self._key(x1, x2, params)
        while True:
            try:
                return jax.block_until_ready(exe(x1, x2, params))
            except Exception as e:  # any failure at run time: the next method is tried
                choice = _auto.CHOOSER.fall_back(key, self.f, self.options, x1, x2, params, e)
            exe = self._executables[key] = choice.compiled

    def _shardable(self, x1) -> bool:
        """Sharding asked for, several local devices, and x1's batch (axis 0) splits evenly."""
        o = self.options
        if not o.shard or len(jax.local_devices()) < 2 or o.vmap_axes != 0:
            return False
        if 0 in np.atleast_1d(o.trace_axes).tolist() + np.atleast_1d(o.diagonal_axes).tolist():
            return False  # the kernel would not keep x1's batch axis first
        n = Batching.make(0).batch_size(x1)
        return n % len(jax.local_devices()) == 0

    def _sharded(self, x1, x2, params):
        """Rows of the kernel (blocks of x1's examples) computed on every local device at once."""
        key = ("shard", self._key(x1, x2, params))
        if key not in self._executables:
            m, options, _ = self._resolved(x1, x2, params)
            mesh = jax.sharding.Mesh(np.array(jax.local_devices()), ("devices",))
            spec, whole = jax.sharding.PartitionSpec("devices"), jax.sharding.PartitionSpec()
            fn = jax.shard_map(
                self._compute_fn(m, options),
                mesh=mesh,
                in_specs=(spec, whole, whole),
                out_specs=spec,
                check_vma=False,
            )
            self._executables[key] = jax.jit(fn)
        return self._executables[key](x1, x1 if x2 is None else x2, params)

    def _key(self, x1, x2, params):
        return cache_key(self.f, self.options, x1, x2, params)

    def _choose(self, x1, x2, params) -> _auto.Choice:
        key = self._key(x1, x2, params)
        return _auto.CHOOSER.choose(key, self.f, self.options, x1, x2, params)

    def _resolved(self, x1, x2, params) -> tuple[NtkMethod, Options, Any]:
        """The method to run, its options and, where auto compiled it just now, its executable.

        Auto's choice runs with the blocks it was fitted with (:func:`._compiled.fit_kernel`);
        a fixed method keeps the caller's options.
        """
        if self.method is not NtkMethod.AUTO:
            return self.method, self.options, None
        choice = self._choose(x1, x2, params)
        e = choice.explanation
        options = _compiled.at_block(self.options, e.estimates[e.method].block_size)
        return NtkMethod(e.method), options, choice.compiled

    def _compute_fn(self, method: NtkMethod, options: Options) -> Callable:
        return functools.partial(compute, self.f, method, options)

    def _traced(self, x1, x2, params):
        """The kernel traced into the caller's program. A fixed method's blocks come from the
        estimate (fitting them here would compile the caller's program twice)."""
        m, options, _ = self._resolved(x1, x2, params)
        return self._compute_fn(m, options)(x1, x2, params)

    def _compiled(self, x1, x2, params):
        """The compiled kernel for these shapes, reusing auto's lowering of the chosen method."""
        key = self._key(x1, x2, params)
        if key is None:
            return None
        if key not in self._executables:
            m, options, compiled = self._resolved(x1, x2, params)
            block = options.block_size
            if compiled is None:  # a fixed method, or auto's choice made by an earlier call
                args = (x1, x2, params)
                fitted = _compiled.fit_kernel(self.f, m, options, args)
                compiled, block = fitted.compiled, fitted.block_size
            self._executables[key] = compiled
            self._blocks[key] = block
        return self._executables[key]


def ntk_fn(
    f: Callable,
    method: NtkMethod | str = NtkMethod.AUTO,
    trace_axes=(),
    diagonal_axes=(),
    vmap_axes=0,
    precision: str = "highest",
    memory_budget: float | None = None,
    block_size: int | None = None,
    shard: bool = False,
    param_blocks=None,
) -> KernelFn:
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
      precision: the matmul precision of the kernel's contractions and of ``f``'s own matmuls
        that name none, as a ``jax.default_matmul_precision`` string. ``"highest"`` (the
        default) is full float32 whatever the global setting says; ``"tensorfloat32"``,
        ``"bfloat16"`` or ``"default"`` (the backend's fastest) trade about 1e-3 relative error
        for speed on GPUs and TPUs (CPUs compute float32 either way). Half-precision
        (bfloat16, float16) parameters and inputs are promoted to float32: the kernel of ``f``
        at those values, accumulated and returned in float32.
      memory_budget: bytes the kernel's compiled program may hold at its peak (arguments,
        outputs, temporaries); ``None``: 90% of an accelerator's memory, 50% of the physical
        memory on CPU. ``method="auto"`` never picks a method whose compiled peak exceeds it,
        and NTK-vector products and structured derivatives walk the output basis in blocks
        (``lax.map``): the largest whose compiled peak (XLA's ``memory_analysis()``) fits it,
        found by compiling a few block sizes when every vector at once does not fit. Where XLA
        gives no memory analysis, and where the kernel of a fixed method is traced inside the
        caller's ``jit``, the blocks take half the budget by an estimate of bytes per vector.
      block_size: output basis vectors evaluated at once, overriding the size chosen from
        ``memory_budget`` (the kernel is the same to float rounding for every block size).
      shard: with several local devices, split x1's examples over all of them (``shard_map``;
        each device computes its rows of the kernel against the whole x2). Needs
        ``vmap_axes=0``, axis 0 neither traced nor diagonal, and N1 divisible by the device
        count; otherwise the kernel is computed on one device as usual. ``--jobs`` runs
        separate processes (one architecture each); sharding splits one kernel: with J jobs
        and D devices per process, give each process its own devices (e.g.
        ``CUDA_VISIBLE_DEVICES``) rather than sharing all D among J.
      param_blocks: a kernel per group of parameters, ``Θ = Σ_b J_b J_bᵀ``: a function from a
        parameter's path (a tuple of dict keys, indices and attribute names, e.g.
        ``("block_0", "fc1", "kernel")``) to a block name, or a mapping ``{name: predicate}``
        (the first predicate that holds for a path names its block; every parameter must be
        claimed). The kernel function then returns ``{name: kernel}``, each of the usual shape,
        summing to the full kernel; each is the kernel w.r.t. that block's parameters, the
        others held at their values, by the method asked for. Structured derivatives compute
        every block from one backward pass (about the full kernel's cost); the other methods
        take one kernel per block.

    Returns:
      A :class:`KernelFn`: ``kernel_fn(x1, x2=None, params)``; ``x2=None`` means ``x2 = x1``.
      Compiled kernels are cached per input shapes; ``kernel_fn.compile(x1, x2, params)``
      compiles without running; ``kernel_fn.method`` is the :class:`NtkMethod` asked for.
      For an output of shape ``(N, O)`` the kernel has shape ``(N1, N2, O, O)`` (``(N1, N2)``
      with ``trace_axes=(-1,)``, ``(N1, N2, O)`` with ``diagonal_axes=(-1,)``); for a pytree
      output, the matching pytree.

    Raises:
      ValueError: unknown method or precision, axes out of range, outputs that do not match.
      TypeError: non-array leaves in params or inputs.

    Example:
      >>> kernel_fn = ntk_fn(lambda p, x: x @ p["w"], trace_axes=(-1,))
      >>> K = kernel_fn(x1, x2, {"w": w})   # (N1, N2)
    """
    options = Options(
        trace_axes=trace_axes,
        diagonal_axes=diagonal_axes,
        vmap_axes=vmap_axes,
        precision=precision,
        memory_budget=memory_budget,
        block_size=block_size,
        shard=shard,
        param_blocks=param_blocks,
    )
    return KernelFn(f, parse_method(method), options)


def as_matrix(kernel: Kernel) -> KernelMatrix:
    """The ``(N1·O) × (N2·O)`` matrix of an ``(N1, N2, O, O)`` kernel (row = (n1, o1))."""
    if kernel.ndim != 4:
        raise ValueError(f"as_matrix needs an (N1, N2, O, O) kernel, got shape {kernel.shape}")
    n1, n2, o1, o2 = kernel.shape
    return kernel.transpose(0, 2, 1, 3).reshape(n1 * o1, n2 * o2)
