"""The engine's test-only switches, flipped in one place and always restored.

Private: tests use :func:`switched`; the public functions take no test-only arguments.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from . import _auto
from .structured import _interpreter


@contextlib.contextmanager
def switched(
    *, rules: bool = True, auto_cache_size: int | None = None
) -> Iterator[_auto.AutoChooser]:
    """Within the block, run the engine with some switches flipped.

    Args:
      rules: False makes every primitive use the dense rule in structured derivatives and forms
        no parameter views.
      auto_cache_size: if set, the automatic choice starts from an empty cache of this size.

    Yields:
      The :class:`AutoChooser` in use within the block.
    """
    old_rules, old_chooser = _interpreter.USE_RULES, _auto.CHOOSER
    _interpreter.USE_RULES = rules
    if auto_cache_size is not None:
        _auto.CHOOSER = _auto.AutoChooser(max_size=auto_cache_size)
    try:
        yield _auto.CHOOSER
    finally:
        _interpreter.USE_RULES, _auto.CHOOSER = old_rules, old_chooser
