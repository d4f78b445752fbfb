"""Replay of a step sequence through the concrete interpreter of the spec."""
from __future__ import annotations

from typing import List, Optional

from kvclaims.spec.actions import Step, complete_choices, enabled, successor
from kvclaims.spec.algebra import CONCRETE as C
from kvclaims.spec.obligations import CHECKED as OBLIGATIONS
from kvclaims.spec.policy import Policy
from kvclaims.spec.state import Config, State, initial_state


class ReplayError(Exception):
    """A trace the concrete spec does not reproduce."""


def replay(cfg: Config, pol: Policy, steps: List[Step], violates: Optional[str] = None,
           start: Optional[State] = None) -> List[State]:
    """Run `steps` from the initial state; every step must be enabled.  With `violates`, the
    final state must break that obligation and every earlier state must satisfy it (so the
    trace is a shortest-style witness, not one that broke it earlier)."""
    s = start if start is not None else initial_state(cfg)
    states = [s]
    for n, step in enumerate(steps):
        ch = complete_choices(cfg, pol, step)
        if not enabled(C, cfg, pol, s, step, ch):
            raise ReplayError(f"step {n + 1} ({step.label()}) is not enabled")
        s, _ = successor(C, cfg, pol, s, step, ch)
        states.append(s)
    if violates is not None:
        ob = OBLIGATIONS[violates]
        if ob.holds(C, cfg, pol, states[-1]):
            raise ReplayError(f"{violates} still holds at the end of the trace")
        for n, st in enumerate(states[:-1]):
            if not ob.holds(C, cfg, pol, st):
                raise ReplayError(f"{violates} already broken after step {n}")
    return states
