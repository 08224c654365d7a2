"""The only module in ntknas that may touch JAX internals (jax.extend, jax.core, jax._src).

Every shim names the JAX versions it serves. Tested: jax 0.10.x (CPU) and 0.11.x (GPU image).
Each is written defensively (``getattr`` with fallbacks) so a renamed attribute degrades to the
slow-but-right path instead of an ImportError.
"""

from __future__ import annotations

from typing import Any

# jax 0.4.30+ through 0.11.x: the public home of Jaxpr types is jax.extend.core. Older releases
# kept them in jax.core; we fall back there so a missing attribute is a clear error, not a crash.
try:  # jax >= 0.4.30 (0.10.x, 0.11.x)
    import jax.extend.core as _core
except ImportError:  # pragma: no cover - very old jax
    import jax.core as _core

Literal = getattr(_core, "Literal", None)
ClosedJaxpr = getattr(_core, "ClosedJaxpr", None)
Jaxpr = getattr(_core, "Jaxpr", None)


def is_literal(atom: Any) -> bool:
    """True for a Jaxpr literal (an inline constant); 0.10.x / 0.11.x: ``Literal.val``."""
    if Literal is not None and isinstance(atom, Literal):
        return True
    return type(atom).__name__ == "Literal" and hasattr(atom, "val")


def literal_value(atom: Any):
    """The value of a Jaxpr literal (``Literal.val`` in jax 0.10.x / 0.11.x)."""
    return atom.val


def aval_of(atom: Any):
    """Shape and dtype of a Jaxpr variable or literal (``.aval`` in 0.10.x / 0.11.x)."""
    return atom.aval


def closed_jaxpr_parts(closed: Any) -> tuple[Any, list]:
    """(jaxpr, consts) of a ClosedJaxpr, or (jaxpr, []) of an open Jaxpr.

    jax 0.10.x / 0.11.x: ClosedJaxpr has ``.jaxpr`` and ``.consts``; an open Jaxpr has
    ``.constvars`` (empty for the sub-jaxprs of call primitives) and ``.eqns``.
    """
    if hasattr(closed, "jaxpr") and hasattr(closed, "consts"):
        return closed.jaxpr, list(closed.consts)
    if hasattr(closed, "eqns") and hasattr(closed, "invars"):
        if getattr(closed, "constvars", ()):
            raise NotImplementedError("open sub-jaxpr with constvars; cannot inline it")
        return closed, []
    raise TypeError(f"not a jaxpr: {type(closed).__name__}")


# Call-like primitives whose body is a sub-jaxpr taking exactly the eqn's operands, by name.
# jax 0.10.x: "jit" (formerly "pjit"), "closed_call", "core_call", "remat2" (jax.checkpoint),
# "custom_jvp_call" and "custom_vjp_call" (call_jaxpr). jax 0.11.x keeps these names; "pjit",
# "checkpoint", "remat" and "custom_vjp_call_jaxpr" cover older/newer spellings.
_CALL_PRIMITIVES = {
    "jit": ("jaxpr",),
    "pjit": ("jaxpr",),
    "closed_call": ("call_jaxpr",),
    "core_call": ("call_jaxpr",),
    "remat2": ("jaxpr",),
    "remat": ("jaxpr",),
    "checkpoint": ("jaxpr",),
    "custom_jvp_call": ("call_jaxpr", "fun_jaxpr"),
    "custom_vjp_call": ("call_jaxpr", "fun_jaxpr"),
    "custom_vjp_call_jaxpr": ("fun_jaxpr", "call_jaxpr"),
}


# The custom-derivative calls among them: inlining their body drops the custom rule.
_CUSTOM_PRIMITIVES = frozenset({"custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr"})


def call_body(eqn: Any, keep_custom: bool = False) -> tuple[Any, list] | None:
    """(jaxpr, consts) of a call-like eqn whose body can be inlined, else None.

    The body must take exactly the eqn's operands and return exactly its results (true for the
    primitives above in jax 0.10.x / 0.11.x; custom_vjp_call's ``num_consts`` operands are part of
    call_jaxpr's invars). With ``keep_custom``, custom_jvp/custom_vjp calls are not inlined (None),
    so their custom derivative rules survive when the eqn is bound again.
    """
    if keep_custom and eqn.primitive.name in _CUSTOM_PRIMITIVES:
        return None
    keys = _CALL_PRIMITIVES.get(eqn.primitive.name)
    if keys is None:
        return None
    for key in keys:
        body = eqn.params.get(key)
        if body is None:
            continue
        try:
            jaxpr, consts = closed_jaxpr_parts(body)
        except (TypeError, NotImplementedError):
            return None
        if len(jaxpr.invars) == len(eqn.invars) and len(jaxpr.outvars) == len(eqn.outvars):
            return jaxpr, consts
    return None


def bind(primitive: Any, invals: list, params: dict) -> list:
    """Applies a primitive as its eqn recorded it; always returns a list.

    jax 0.10.x / 0.11.x: ``Primitive.get_bind_params`` turns an eqn's params into bind's keyword
    arguments (the identity for plain primitives; custom_jvp_call's jaxprs become functions);
    older releases returned ``(subfuns, params)``, with the subfuns passed first.
    ``multiple_results`` says whether bind returns a list.
    """
    get = getattr(primitive, "get_bind_params", None)
    bind_params = get(params) if get is not None else params
    if isinstance(bind_params, tuple):  # jax < 0.5: (subfuns, params)
        subfuns, bind_params = bind_params
        out = primitive.bind(*subfuns, *invals, **bind_params)
    else:
        out = primitive.bind(*invals, **bind_params)
    return list(out) if primitive.multiple_results else [out]


# --- tracer detection (used by ntknas.ntk._api) ---------------------------------------------------
# jax.core.Tracer is the base class of every tracer in jax 0.4 through 0.11 (0.10.x here, 0.11.x on
# the GPU image); there is no public predicate for "is this value being traced".
def contains_tracer(tree) -> bool:
    """Whether any leaf of ``tree`` is a JAX tracer (we are inside jit/vmap/grad)."""
    import jax

    tracer = getattr(jax.core, "Tracer", None)
    if tracer is None:  # a future JAX without jax.core.Tracer: take the always-correct traced path
        return True
    return any(isinstance(leaf, tracer) for leaf in jax.tree.leaves(tree))
