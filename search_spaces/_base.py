"""The search-space contract and its registry.

A space is a small object, registered by name, that Optuna can sample (``suggest``), that checks
configs from files or the command line (``validate``), and that builds a Flax module (``build``).
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from typing import Any, ClassVar

Config = dict[str, Any]

_REGISTRY: dict[str, type[SearchSpace]] = {}


class SearchSpace(abc.ABC):
    """One family of architectures.

    Attributes:
      name: the name users type (``ntknas search --space NAME``).
      default_num_classes: logits of the scored model unless the user says otherwise.
      default_input_shape: (H, W, C) of one input example.
      size: the number of architectures, or None when infinite.
    """

    name: ClassVar[str]
    default_num_classes: ClassVar[int]
    default_input_shape: ClassVar[tuple[int, ...]]
    size: ClassVar[int | None] = None

    @abc.abstractmethod
    def suggest(self, trial) -> Config:
        """Draws one config with ``trial.suggest_*``."""

    @abc.abstractmethod
    def validate(self, config: Config) -> Config:
        """Returns the config (normalized); raises ValueError naming field, value, allowed values."""

    @abc.abstractmethod
    def build(self, config: Config, num_classes: int | None = None, input_shape=None):
        """A Flax module for ``config``; None means the space's defaults."""

    @abc.abstractmethod
    def describe(self, config: Config) -> str:
        """A short one-line description for leaderboards."""

    def enumerate(self) -> Iterator[Config]:
        raise TypeError(f"space {self.name!r} is infinite and cannot be enumerated")


def register(cls: type[SearchSpace]) -> type[SearchSpace]:
    """Class decorator: makes ``cls`` reachable as ``get_space(cls.name)``."""
    if cls.name in _REGISTRY:
        raise ValueError(f"search space {cls.name!r} is registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def list_spaces() -> list[str]:
    return sorted(_REGISTRY)


def get_space(name: str) -> SearchSpace:
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise ValueError(
            f"unknown search space {name!r}; known spaces: {', '.join(list_spaces())}"
        ) from None
