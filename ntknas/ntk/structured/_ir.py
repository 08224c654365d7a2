"""A flat, call-free copy of a Jaxpr that the structured-derivatives interpreter walks.

Sub-jaxprs of call-like primitives (jit, remat/checkpoint, custom_jvp/vjp calls) are inlined by one
rule, so every later pass sees a single list of primitive equations. Variables are our own
identity-hashed objects, literals and closed-over constants are :class:`Lit`; nothing here depends
on JAX's private classes beyond what :mod:`ntknas.ntk._jax_compat` exposes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import _jax_compat as jc


class Var:
    """A variable of the flat program: shape and dtype, compared by identity."""

    __slots__ = ("shape", "dtype")

    def __init__(self, shape, dtype):
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)

    def __repr__(self) -> str:
        return f"Var({self.shape}, {self.dtype})"


@dataclass(eq=False)
class Lit:
    """A constant operand: a Jaxpr literal or a closed-over value (may be a tracer)."""

    value: Any

    @property
    def shape(self):
        return tuple(np.shape(self.value))


Atom = Var | Lit


@dataclass(eq=False)
class Eqn:
    primitive: Any
    params: dict
    invars: list  # list[Atom]
    outvars: list  # list[Var]

    @property
    def name(self) -> str:
        return self.primitive.name


@dataclass
class Program:
    invars: list[Var]
    outvars: list  # list[Atom]
    eqns: list[Eqn] = field(default_factory=list)


def flatten(closed_jaxpr, keep_custom: bool = False) -> Program:
    """The flat program of a ClosedJaxpr, with every call-like sub-jaxpr inlined.

    With ``keep_custom``, custom_jvp/custom_vjp calls stay single eqns (binding one again keeps its
    custom derivative rule); otherwise their bodies are inlined too.
    """
    jaxpr, consts = jc.closed_jaxpr_parts(closed_jaxpr)
    invars = [_new_var(v) for v in jaxpr.invars]
    eqns: list[Eqn] = []
    outvars = _inline(jaxpr, consts, invars, eqns, keep_custom)
    return Program(invars, outvars, eqns)


def _new_var(jvar) -> Var:
    aval = jc.aval_of(jvar)
    return Var(aval.shape, aval.dtype)


def _inline(jaxpr, consts, inputs: list, eqns: list[Eqn], keep_custom: bool = False) -> list:
    env: dict[Any, Any] = {}
    for v, c in zip(jaxpr.constvars, consts, strict=True):
        env[v] = Lit(c)
    for v, a in zip(jaxpr.invars, inputs, strict=True):
        env[v] = a

    def read(atom):
        return Lit(jc.literal_value(atom)) if jc.is_literal(atom) else env[atom]

    for eqn in jaxpr.eqns:
        ins = [read(a) for a in eqn.invars]
        body = jc.call_body(eqn, keep_custom)
        if body is not None:
            outs = _inline(body[0], body[1], ins, eqns, keep_custom)
        else:
            outs = [_new_var(v) for v in eqn.outvars]
            eqns.append(Eqn(eqn.primitive, dict(eqn.params), ins, outs))
        for v, o in zip(eqn.outvars, outs, strict=True):
            env[v] = o
    return [read(v) for v in jaxpr.outvars]


def read(env: dict, atom):
    """The value of an atom in an environment keyed by :class:`Var`."""
    if isinstance(atom, Lit):
        return atom.value
    return env[atom]


def bind(eqn: Eqn, invals: list) -> list:
    return jc.bind(eqn.primitive, invals, eqn.params)
