"""The search-space contract, its registry, and the checks every space's ``validate`` shares.

A space is a small object, registered by name, that Optuna can sample (``suggest``), that checks
configs from files or the command line (``validate``), and that builds a Flax module (``build``).

Conventions every space follows:

- ``suggest(trial)`` is define-by-run: per-layer choices are drawn only for the layers that exist
  (``heads_0`` .. ``heads_{depth-1}``), as in Optuna's own examples. Samplers that need a fixed
  search space (CMA-ES, GP, QMC) sample the parameters common to all trials jointly and fall back to
  independent sampling for the conditional ones, which Optuna does automatically.
- ``validate`` accepts either the config ``suggest`` returned or the flat ``trial.params`` of the
  trial that drew it (``space.validate(study.best_params)`` works), and returns the same normalized
  config for both.
- ``build`` returns a ``flax.linen.Module`` whose ``__call__(x, train=False)`` maps
  ``x: (N, H, W, C)`` to logits ``(N, num_classes)``. With ``train=False`` BatchNorm uses its
  running statistics (at initialization: mean 0, variance 1), so each example's output depends on
  that example alone, which is what a per-example NTK needs. With ``train=True`` BatchNorm uses the
  statistics of the batch (as TE-NAS does) and the caller passes ``mutable=["batch_stats"]``.
"""

from __future__ import annotations

import abc
import numbers
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

Config = dict[str, Any]


@dataclass(frozen=True)
class SharedGraph:
    """One Flax module that computes every architecture of a space, the choice an input array.

    Scoring many configs then traces and compiles once: the architecture is an argument of the
    compiled kernel, not a constant. For every config of the space, ``module.apply(variables, x,
    encode(config), train=t)`` with ``variables = init_own(key, x, config)`` is the config's own
    network at its own initialization, and its NTK over all shared parameters is the config's own
    NTK (parameters outside the config get exactly zero gradient); ``select(variables, config)``
    gives the config's own variables (its parameter count) and ``embed`` puts own variables back.

    Two kinds exist. nb201's graph selects each edge's op by weights, with one conv per edge
    (``init`` holds every cell's own initial values at once, so ``init_own`` ignores the
    config). The width/depth spaces' graphs are their largest network with masks
    (:mod:`search_spaces._masked`): initial values
    depend on the candidate's fan-ins, so ``init`` is None and ``init_own`` draws them (compiled
    once per space and input shape).

    Attributes:
      module: ``__call__(x, arch, train=False)`` -> logits ``(N, num_classes)``.
      init: ``init(key, x)`` -> shared variables holding every config's own initial values, with
        ``select(init(key, x), config) == space.build(config).init(key, x)``; None where no such
        variables exist (use ``init_own``).
      encode: ``encode(config)`` -> the ``arch`` array (numpy) of a config; ValueError for a
        config outside the space (or one the graph does not hold, named in the message).
      select: ``select(variables, config)`` -> that config's own variables (tree and shapes of
        ``space.build(config).init``).
      embed: ``embed(own_variables, config)`` -> shared variables with the config's own values
        in its place and zeros elsewhere; ``select(embed(v, c), c) == v``. None for nb201.
      init_own: ``init_own(key, x, config)`` -> shared variables whose config's part has the
        distribution of ``space.build(config).init(key, x)`` (the same values for nb201; other
        values for the masked graphs). Defaults to ``init`` ignoring the config.
    """

    module: Any
    init: Callable | None
    encode: Callable[[Config], Any]
    select: Callable[[dict, Config], dict]
    embed: Callable[[dict, Config], dict] | None = None
    init_own: Callable | None = None

    def __post_init__(self):
        if self.init_own is None:
            if self.init is None:
                raise ValueError("a SharedGraph needs init or init_own")
            init = self.init
            object.__setattr__(self, "init_own", lambda key, x, config: init(key, x))


_REGISTRY: dict[str, type[SearchSpace]] = {}
SHORT_WIDTH = 24  # the most characters of SearchSpace.short


class SearchSpace(abc.ABC):
    """One family of architectures.

    Attributes:
      name: the name users type (``ntknas search --space NAME``).
      default_num_classes: logits of the scored model unless the user says otherwise.
      default_input_shape: (H, W, C) of one input example.
      size: the number of architectures, or None when infinite.
      has_batch_norm: whether built modules hold BatchNorm (``batch_stats``), i.e. whether the
        ``train`` flag (inference vs batch statistics) changes their outputs.
      default_budget: ``(low, high)`` parameter counts a search keeps to unless the user gives
        bounds, counted on the network as scored (the leaderboard's ``params``); None leaves a
        side open. ``(None, None)``: no budget.
      default_objective: what a search optimizes, and what ``score_many``'s ``score`` column
        ranks by, unless the user names an objective (the syntax of
        :func:`ntknas.proxies.parse_terms`; a space names it, the study and scoring evaluate it).
    """

    name: ClassVar[str]
    default_num_classes: ClassVar[int]
    default_input_shape: ClassVar[tuple[int, int, int]]
    size: ClassVar[int | None] = None
    has_batch_norm: ClassVar[bool] = False
    default_budget: ClassVar[tuple[int | None, int | None]] = (None, None)
    # Chosen by the NAS-Bench-201 study (experiments/README.md); spaces whose own study found
    # better set theirs.
    default_objective: ClassVar[str] = "rank(ntk_eig_min:max+ntk_eff_rank:max+flops:max)"
    # The scorer's path rule sends a config through the shared graph when the graph's forward
    # FLOPs are at most this many times the config's own; None: the scorer's default.
    shared_flops_max: ClassVar[float | None] = None
    # ``param_block(path) -> name``: the block of each parameter of the space's networks (own and
    # shared graph alike), for the per-block kernels and their proxies (``blk_*``; see
    # ``ntknas.ntk.ntk_fn(..., param_blocks=...)``). None: the space has no per-block proxies.
    param_block: ClassVar[Callable[[tuple], str] | None] = None

    @abc.abstractmethod
    def suggest(self, trial) -> Config:
        """Draws one config with ``trial.suggest_*``."""

    @abc.abstractmethod
    def validate(self, config: Config) -> Config:
        """The normalized config; ValueError names the bad field, its value, the allowed values."""

    @abc.abstractmethod
    def build(self, config: Config, num_classes: int | None = None, input_shape=None):
        """A Flax module for ``config``; None means the space's defaults."""

    @abc.abstractmethod
    def describe(self, config: Config) -> str:
        """A short one-line description for leaderboards."""

    def short(self, config: Config) -> str:
        """A description of at most :data:`SHORT_WIDTH` characters: one leaderboard cell that
        fits a 100-column terminal (the full config stays in CSV and JSON)."""
        return self.describe(config)

    def size_extremes(self) -> tuple[Config, ...]:
        """Configs among which are the space's fewest and its most parameters, for every input
        shape and class count; a budget no config can meet is refused before a search starts.
        Empty: not known (such a budget is found out while sampling)."""
        return ()

    def shared_graph(
        self, num_classes: int | None = None, input_shape: Sequence[int] | None = None
    ) -> SharedGraph | None:
        """All configs as one module (see :class:`SharedGraph`), or None if the space has none."""
        return None

    def enumerate(self) -> Iterator[Config]:
        """Every config of a finite space, in a fixed order."""
        raise TypeError(f"space {self.name!r} is infinite and cannot be enumerated")

    def resolve_io(
        self, num_classes: int | None = None, input_shape: Sequence[int] | None = None
    ) -> tuple[int, tuple[int, int, int]]:
        """Fills in the space's defaults and checks ``num_classes`` and ``input_shape``.

        Returns:
          ``(num_classes, (H, W, C))``.

        Raises:
          ValueError: a non-positive class count or a shape that is not three positive ints.
        """
        if num_classes is None:
            num_classes = self.default_num_classes
        if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral):
            raise ValueError(f"num_classes={num_classes!r} must be a positive int")
        if num_classes < 1:
            raise ValueError(f"num_classes={num_classes!r} must be a positive int")
        shape = self.default_input_shape if input_shape is None else tuple(input_shape)
        if len(shape) != 3 or not all(
            isinstance(d, numbers.Integral) and not isinstance(d, bool) and d > 0 for d in shape
        ):
            raise ValueError(f"input_shape={input_shape!r} must be (H, W, C) with positive ints")
        return int(num_classes), tuple(int(d) for d in shape)


def register(cls: type[SearchSpace]) -> type[SearchSpace]:
    """Class decorator: makes ``cls`` reachable as ``get_space(cls.name)``."""
    if cls.name in _REGISTRY:
        raise ValueError(f"search space {cls.name!r} is registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def list_spaces() -> list[str]:
    """The names of all registered spaces, sorted."""
    return sorted(_REGISTRY)


def get_space(name: str) -> SearchSpace:
    """A fresh instance of the space registered as ``name``.

    Raises:
      ValueError: ``name`` is not registered; the message lists the known names.
    """
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise ValueError(
            f"unknown search space {name!r}; known spaces: {', '.join(list_spaces())}"
        ) from None


# --- checks shared by every space's ``validate`` -------------------------------------------------


def check_mapping(space: str, config: Any) -> dict[str, Any]:
    """A shallow copy of ``config``; raises TypeError when it is not a mapping."""
    if not hasattr(config, "keys"):
        raise TypeError(f"{space}: a config is a dict, got {type(config).__name__}")
    return dict(config)


def check_fields(
    space: str, config: dict[str, Any], required: Iterable[str], optional: Iterable[str] = ()
) -> None:
    """Raises ValueError naming missing and unknown fields, and the allowed ones."""
    required, optional = list(required), list(optional)
    missing = [f for f in required if f not in config]
    unknown = sorted(f for f in config if f not in required and f not in optional)
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing field(s) {missing}")
        if unknown:
            parts.append(f"unknown field(s) {unknown}")
        allowed = required + [f"{f} (optional)" for f in optional]
        raise ValueError(f"{space}: {'; '.join(parts)}; fields are {allowed}")


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def check_choice(field: str, value: Any, allowed: Sequence[Any]) -> Any:
    """The element of ``allowed`` equal to ``value`` (so 4 and 4.0 both give the canonical one).

    Raises:
      ValueError: naming the field, the value and the allowed values.
    """
    for a in allowed:
        if isinstance(a, str):
            if isinstance(value, str) and value == a:
                return a
        elif _is_number(value) and value == a:
            return a
    raise ValueError(f"{field}={value!r} is not allowed; allowed values: {list(allowed)}")


def check_int(field: str, value: Any, low: int, high: int) -> int:
    """``value`` as an int in ``[low, high]``; ValueError naming the field, value and range."""
    if not _is_number(value) or int(value) != value or not low <= value <= high:
        raise ValueError(f"{field}={value!r} is not allowed; allowed values: ints {low}..{high}")
    return int(value)


def check_list(field: str, value: Any, length: int, length_field: str) -> list[Any]:
    """``value`` as a list of ``length`` items; ValueError when it is not one."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"{field}={value!r} must be a list of {length} values ({length_field})")
    if len(value) != length:
        raise ValueError(
            f"{field} has {len(value)} entries but {length_field}={length}; "
            f"give one value per layer"
        )
    return list(value)


def gather_layers(config: dict[str, Any], prefixes: Iterable[str]) -> dict[str, Any]:
    """Turns flat per-layer keys (``heads_0``, ``heads_1``, ..) into lists (``heads``).

    This is how ``trial.params`` (flat, as Optuna stores them) become a config. A config that has
    both the list and a flat key for the same prefix is ambiguous and rejected.
    """
    out = dict(config)
    for prefix in prefixes:
        pattern = re.compile(rf"^{re.escape(prefix)}_(\d+)$")
        flat = {int(m.group(1)): k for k in config if (m := pattern.match(k))}
        if not flat:
            continue
        if prefix in config:
            raise ValueError(f"give {prefix!r} either as a list or as {prefix}_0.., not both")
        indices = sorted(flat)
        if indices != list(range(len(indices))):
            raise ValueError(f"{prefix}_i keys must be numbered 0..n-1 without gaps, got {indices}")
        out[prefix] = [out.pop(flat[i]) for i in indices]
    return out


def run_length(values: Sequence[Any]) -> str:
    """A compact form of a per-layer list: ``[6, 6, 6, 7]`` -> ``"6x3,7"``."""
    groups: list[list[Any]] = []
    for v in values:
        if groups and groups[-1][0] == v:
            groups[-1][1] += 1
        else:
            groups.append([v, 1])

    def fmt(v):
        return f"{v:g}" if isinstance(v, float) else str(v)

    return ",".join(fmt(v) if n == 1 else f"{fmt(v)}x{n}" for v, n in groups)
