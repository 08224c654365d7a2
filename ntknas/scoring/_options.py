"""How a candidate is scored (:class:`ScoreOptions`) and the JSON forms configs and options take."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

BN_MODES = ("eval", "train")
# BatchNorm on batch statistics, as TE-NAS: the NAS-Bench-201 study (experiments/README.md) found
# the NTK proxies said little in eval mode. Every entry point (score, score_many, search, compare,
# the CLI) takes this default; a network without BatchNorm scores the same in either mode.
DEFAULT_BN = "train"
DEFAULT_BATCH = 4
# Kernel matrices with more rows than this (N·O) are read matrix-free by default: forming one
# costs N·O Jacobian-vector products, the matrix-free spectrum 400 (see operator_proxies).
MATRIX_FREE_ABOVE = 1024


@dataclass(frozen=True, kw_only=True)
class ScoreOptions:
    """How a candidate is scored. Every field is recorded with its scores.

    Attributes:
      batch: examples N in the batch; the kernel matrix is (N·O)×(N·O).
      seed: seeds both the parameter initialization and the data draw.
      data: ``"gaussian"``, ``"digits"`` or ``"mnist"`` (see :mod:`ntknas.data`).
      num_classes: logits O; None means the space's default.
      input_shape: (H, W, C) of one example; None means the space's default.
      bn: ``"train"`` (default, :data:`DEFAULT_BN`: BatchNorm on batch statistics, the kernel
        taken over the whole batch at once) or ``"eval"`` (BatchNorm on its initial
        statistics: examples independent).
      float64: compute the kernel in float64 (needs ``jax_enable_x64``); float32 otherwise.
      method: the NTK method (see :class:`ntknas.ntk.NtkMethod`); ``"auto"`` picks the cheapest
        for each architecture.
      overrides: ``(field, value)`` pairs set in every config before it is validated, e.g.
        ``(("patch_size", 16),)`` for the ViT spaces (the CLI's ``--patch``).
      matrix_free_above: kernel matrices with more rows ``N·O`` than this are never formed: the
        proxies come from Lanczos, a deflated Hutchinson trace and stochastic Lanczos quadrature
        on NTK-vector products (:func:`ntknas.proxies.operator_proxies`; the pseudo-NTK proxies
        and ``ntk_corr_cond`` are then NaN). None always forms the kernel.
    """

    batch: int = DEFAULT_BATCH
    seed: int = 0
    data: str = "gaussian"
    num_classes: int | None = None
    input_shape: tuple[int, ...] | None = None
    bn: str = DEFAULT_BN
    float64: bool = False
    method: str = "auto"
    overrides: tuple[tuple[str, Any], ...] = ()
    matrix_free_above: int | None = MATRIX_FREE_ABOVE

    def __post_init__(self):
        from .. import data as data_mod
        from .. import ntk

        if not isinstance(self.batch, int) or self.batch < 1:
            raise ValueError(f"batch must be a positive int, got {self.batch!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")
        if self.data not in data_mod.DATASETS:
            raise ValueError(
                f"unknown data {self.data!r}; choose one of {', '.join(data_mod.DATASETS)}"
            )
        if self.num_classes is not None and (
            not isinstance(self.num_classes, int) or self.num_classes < 1
        ):
            raise ValueError(f"num_classes must be a positive int, got {self.num_classes!r}")
        if self.input_shape is not None:
            shape = tuple(self.input_shape)
            if len(shape) != 3 or not all(isinstance(s, int) and s >= 1 for s in shape):
                raise ValueError(
                    f"input_shape must be (H, W, C) positive ints, got {self.input_shape!r}"
                )
            object.__setattr__(self, "input_shape", shape)
        if self.bn not in BN_MODES:
            raise ValueError(f"unknown bn mode {self.bn!r}; choose one of {', '.join(BN_MODES)}")
        try:
            ntk.NtkMethod(self.method)
        except ValueError:
            allowed = ", ".join(m.value for m in ntk.NtkMethod)
            raise ValueError(
                f"unknown NTK method {self.method!r}; choose one of {allowed}"
            ) from None
        overrides = tuple(dict(self.overrides).items())  # also accepts a dict
        for k, v in overrides:
            if not isinstance(k, str):
                raise ValueError(f"override fields must be strings, got {k!r}")
            hash(v)
        object.__setattr__(self, "overrides", overrides)
        m = self.matrix_free_above
        if m is not None and (not isinstance(m, int) or isinstance(m, bool) or m < 1):
            raise ValueError(f"matrix_free_above must be a positive int or None, got {m!r}")
        if self.float64:
            import jax

            if not jax.config.jax_enable_x64:
                raise ValueError("float64=True needs jax_enable_x64 (the CLI's --float64 sets it)")

    @property
    def dtype(self) -> str:
        return "float64" if self.float64 else "float32"

    def matrix_free(self, num_classes: int) -> bool:
        """Whether the proxies of an (N·O)×(N·O) kernel with these options are matrix-free."""
        m = self.matrix_free_above
        return m is not None and self.batch * num_classes > m

    def resolve_io(self, space) -> tuple[int, tuple[int, int, int]]:
        """``(num_classes, (H, W, C))`` of the scored models: these options, else the space's."""
        return space.resolve_io(self.num_classes, self.input_shape)


def apply_overrides(space, config: dict, options: ScoreOptions) -> dict:
    """``config`` with ``options.overrides`` set, validated by ``space`` (ValueError if outside)."""
    return space.validate({**config, **dict(options.overrides)})


def canonical_json(config: dict) -> str:
    """The config as compact JSON with sorted keys: equal configs give equal strings."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"), default=_json_default)


def _json_default(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, tuple):
        return list(v)
    raise TypeError(f"config value {v!r} of type {type(v).__name__} is not JSON serializable")


def options_dict(options: ScoreOptions) -> dict[str, Any]:
    """The options as plain JSON-able values (for study attributes)."""
    d = asdict(options)
    d["input_shape"] = list(d["input_shape"]) if d["input_shape"] else None
    d["overrides"] = [list(kv) for kv in d["overrides"]]
    return d
