"""Proofs that a non-vacuity goal can never be reached, so that a goal the checker expects to be
unreachable gets a verdict (a proof) instead of "not reached within N steps" (a bound).

The argument: let Inv be the candidates (S1-S6, O1-O16) that Houdini proves inductive for the
policy with the goal's number of claim and request slots, for every configuration of those
slots.  The goal's configuration is one of them, so Inv holds in each of its reachable states.
A goal may name a lemma L (a state predicate): L is proved to hold initially and to be kept
by every action from any state satisfying Inv and L.  Then, if no action leads from a state
satisfying Inv and L to a frame satisfying the goal, no run reaches the goal at any depth.
Every query is z3's unsat; an unknown or sat answer is no proof, and the caller falls back to
the bounded search, which is why it runs second: checker/run.py asks for a proof only when
the bounded search reached nothing (Houdini here repeats the policy job's, in another process,
so asking first for every goal cost more than the unrolling it would spare)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import z3

from kvclaims.spec.policy import Policy
from kvclaims.spec.state import Config, State

from .bmc import Unrolling
from .induction import conjunction, prove
from .symbolic import sym_initial

Lemma = Callable[[Config, State], object]


@dataclass(frozen=True)
class Unreachable:
    """The proof's ingredients, for the report: which invariants and which lemma it used."""
    invariants: Tuple[str, ...]
    lemma: Optional[str]
    slots: str


_PROVED: Dict[Tuple[str, int, int], Tuple[str, ...]] = {}


def _inductive(pol: Policy, K: int, R: int, timeout_ms: int) -> Tuple[str, ...]:
    # one Houdini run per (policy, slots) in a worker process, shared by its goals
    key = (pol.name, K, R)
    if key not in _PROVED:
        _PROVED[key] = tuple(prove(pol, K, R, timeout_ms=timeout_ms).proved)
    return _PROVED[key]


def prove_unreachable(pol: Policy, goal: Callable[[Unrolling], object], K: int, R: int,
                      config: Optional[Config], timeout_ms: int,
                      lemma: Optional[Lemma] = None, lemma_doc: Optional[str] = None
                      ) -> Optional[Unreachable]:
    """An Unreachable when the queries above are all unsat, else None."""
    if config is not None:
        K, R = len(config.claims), len(config.requests)
    inv = _inductive(pol, K, R, timeout_ms)
    u = Unrolling(pol, K, R, timeout_ms, config=config, start_free=True)
    s = u.states[0]
    u.solver.add(conjunction(u.cfg, pol, s, inv))
    if lemma is not None:
        if u.check(z3.Not(lemma(u.cfg, sym_initial(u.cfg)))) != z3.unsat:
            return None
        u.solver.add(lemma(u.cfg, s))
    u.extend()
    if lemma is not None and u.check(z3.Not(lemma(u.cfg, u.states[-1]))) != z3.unsat:
        return None
    if u.check(goal(u)) != z3.unsat:
        return None
    return Unreachable(inv, lemma_doc, f"{K}+{R}")


__all__ = ["Unreachable", "prove_unreachable"]
