"""The registry of structure rules, keyed by primitive name.

A rule ``rule(eqn, idx, out_idx, invals) -> Structure`` describes ``∂ eqn.outvars[out_idx] /
∂ eqn.invars[idx]`` for a linear primitive. ``invals`` holds the values of the operands that do not
depend on the parameters and ``None`` for those that do (operand ``idx`` among them). A rule
returns ``None`` when its structure does not apply to these params; the dense rule is used then.
"""

from __future__ import annotations

from collections.abc import Callable

RULES: dict[str, Callable] = {}

# Unary primitives that only rearrange (or re-type) their operand, preserving inner products.
# A parameter seen through a chain of these is a "view" of it: the primitive consuming the view is
# where the structure is taken, so the cotangent of the view itself (a weight-space cotangent) is
# never formed.
VIEW_PRIMITIVES = frozenset(
    {"reshape", "transpose", "convert_element_type", "squeeze", "copy", "copy_p"}
)


def register(*names: str) -> Callable:
    """Registers the decorated function as the rule of every primitive in ``names``."""

    def deco(fn: Callable) -> Callable:
        for name in names:
            if name in RULES:
                raise ValueError(f"two structure rules for primitive {name!r}")
            RULES[name] = fn
        return fn

    return deco
