"""The two interpretations of the spec's actions.

Every guard, effect and obligation is written once against an `ops` object.  `CONCRETE`
evaluates it on Python ints and bools (the explorer, the litmus runner, the refinement
harness); `SYMBOLIC` builds z3 terms from the very same code (the prover and BMC).  Python's
`if`, `and`, `or` and `min` are never applied to state values in the spec: they would silently
break the symbolic reading, so everything branches through `ops`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import z3


@dataclass(frozen=True)
class Ops:
    name: str
    If: Callable[[Any, Any, Any], Any]
    And: Callable[..., Any]
    Or: Callable[..., Any]
    Not: Callable[[Any], Any]
    Sum: Callable[[Any], Any]

    def Implies(self, a, b):
        return self.Or(self.Not(a), b)

    def Min(self, a, b):
        return self.If(a <= b, a, b)

    def In(self, x, values):
        return self.Or(*(x == v for v in values))


def _c_and(*xs):
    return all(xs)


def _c_or(*xs):
    return any(xs)


CONCRETE = Ops(
    name="concrete",
    If=lambda c, a, b: a if c else b,
    And=_c_and,
    Or=_c_or,
    Not=lambda x: not x,
    Sum=lambda xs: sum(xs),
)


def _z_and(*xs):
    return z3.And(*xs) if xs else z3.BoolVal(True)


def _z_or(*xs):
    return z3.Or(*xs) if xs else z3.BoolVal(False)


def _z_sum(xs):
    xs = list(xs)
    return z3.Sum(xs) if xs else z3.IntVal(0)


SYMBOLIC = Ops(
    name="symbolic",
    If=z3.If,
    And=_z_and,
    Or=_z_or,
    Not=z3.Not,
    Sum=_z_sum,
)
