"""The engine's test-only switches, flipped in one place and always restored.

Private: tests use :func:`switched`; the public functions take no test-only arguments.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from . import _auto, _kernel
from .structured import _interpreter


@contextlib.contextmanager
def switched(
    *,
    rules: bool = True,
    auto_cache_size: int | None = None,
    failing: tuple[str, ...] = (),
    failing_at_run: tuple[str, ...] = (),
) -> Iterator[_auto.AutoChooser]:
    """Within the block, run the engine with some switches flipped.

    Args:
      rules: False makes every primitive use the dense rule in structured derivatives and forms
        no parameter views.
      auto_cache_size: if set, the automatic choice starts from an empty cache of this size.
      failing: methods (values of NtkMethod) that raise RuntimeError when traced.
      failing_at_run: methods whose compiled kernel raises when it runs (a host callback that
        raises, surfacing as JAX's runtime error), as an out-of-memory error at execution would.

    Yields:
      The :class:`AutoChooser` in use within the block.
    """
    old_rules, old_chooser = _interpreter.USE_RULES, _auto.CHOOSER
    old_failing = _kernel.FAILING, _kernel.FAILING_AT_RUN
    _interpreter.USE_RULES = rules
    _kernel.FAILING, _kernel.FAILING_AT_RUN = frozenset(failing), frozenset(failing_at_run)
    if auto_cache_size is not None:
        _auto.CHOOSER = _auto.AutoChooser(max_size=auto_cache_size)
    try:
        yield _auto.CHOOSER
    finally:
        _interpreter.USE_RULES, _auto.CHOOSER = old_rules, old_chooser
        _kernel.FAILING, _kernel.FAILING_AT_RUN = old_failing
