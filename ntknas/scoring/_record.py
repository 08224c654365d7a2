"""The record of one scored architecture: its proxies and how they were obtained."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PATHS = ("own", "shared")  # the config's own network compiled, or its space's shared graph


@dataclass(frozen=True, kw_only=True)
class Score:
    """Every proxy of one architecture and how it was obtained.

    Attributes:
      space, config, description: the architecture; ``short`` is its leaderboard cell
        (:meth:`search_spaces.SearchSpace.short`).
      kernel_proxies: the proxies read from the kernel (:func:`ntknas.proxies.kernel_proxies`).
      spectrum: ``"exact"`` (the kernel formed and diagonalized) or how a matrix-free spectrum
        estimated them (:func:`ntknas.proxies.operator_proxies`; see
        ``ScoreOptions.matrix_free_above``).
      params: trainable parameters of the config's own network.
      flops: its forward FLOPs per example (None where XLA reports none).
      method: the NTK method used (what ``"auto"`` chose).
      ntk_flops: the FLOPs of the kernel computed (on the shared path: the shared graph's).
      path: ``"own"`` (the config's own network compiled) or ``"shared"`` (the space's shared
        graph); see :class:`Scorer`.
      seconds: all of the scoring; ``compile_seconds`` (0 when a compiled kernel was reused),
        ``init_seconds`` (drawing the initial parameters; on the shared path the first draw
        includes compiling the graph's initializer) and ``kernel_seconds`` (running the compiled
        kernel) are parts of it.
      batch, data, seed, bn, num_classes, input_shape, dtype: the options it was scored with.
    """

    space: str
    config: dict[str, Any]
    description: str
    short: str
    kernel_proxies: Mapping[str, float]
    spectrum: str
    params: int
    flops: float | None
    method: str
    ntk_flops: float | None
    path: str
    seconds: float
    compile_seconds: float
    init_seconds: float
    kernel_seconds: float
    batch: int
    data: str
    seed: int
    bn: str
    num_classes: int
    input_shape: tuple[int, int, int]
    dtype: str

    def __getitem__(self, proxy: str) -> float:
        """The value of a proxy of :data:`ntknas.proxies.PROXIES` by name."""
        if proxy == "params":
            return self.params
        if proxy == "flops":
            return self.flops
        return self.kernel_proxies[proxy]

    def as_dict(self) -> dict[str, Any]:
        """The flat record stored with a trial and written as a row (input_shape as ``HxWxC``)."""
        return {
            "space": self.space,
            "config": self.config,
            "description": self.description,
            "short": self.short,
            **self.kernel_proxies,
            "init_seconds": self.init_seconds,
            "kernel_seconds": self.kernel_seconds,
            "params": self.params,
            "flops": self.flops,
            "method": self.method,
            "spectrum": self.spectrum,
            "ntk_flops": self.ntk_flops,
            "seconds": self.seconds,
            "compile_seconds": self.compile_seconds,
            "path": self.path,
            "batch": self.batch,
            "data": self.data,
            "seed": self.seed,
            "bn": self.bn,
            "num_classes": self.num_classes,
            "input_shape": "x".join(map(str, self.input_shape)),
            "dtype": self.dtype,
        }
