"""Which slots and choices each action of the spec takes, and the check that a step read from
a file (litmus scenario, ITF trace, plain JSON trace) fits its configuration and policy: known
action, the slots it needs and in range, only choices it has, each of the right sort and
bounded.  Every reader calls check_step before a step reaches the spec or a target."""
from __future__ import annotations

from typing import Any, Dict, Tuple

from kvclaims.errors import UsageError, shown
from kvclaims.limits import MAX_BLOCKS
from kvclaims.spec.actions import ACTIONS, Step
from kvclaims.spec.policy import Policy
from kvclaims.spec.state import Config

CLAIM_ACTIONS = ("submit", "accept", "reject", "materialize", "evict", "release")
REQUEST_ACTIONS = ("admit", "finish", "defer", "refuse")
PAIR_ACTIONS = ("demote", "reuse")


def slot_names(action: str) -> Tuple[str, ...]:
    """The slot arguments of an action, in the order Step.slots holds them."""
    if action in CLAIM_ACTIONS:
        return ("claim",)
    if action in REQUEST_ACTIONS:
        return ("request",)
    if action in PAIR_ACTIONS:
        return ("request", "claim")
    return ()


def choice_sorts(cfg: Config, pol: Policy, action: str) -> Dict[str, str]:
    return {c.name: c.sort for c in ACTIONS[action].choices(cfg, pol)}


def check_action(action: Any, where: str) -> str:
    if not isinstance(action, str) or action not in ACTIONS:
        raise UsageError(f"{where}: unknown action {shown(action)} (choose from "
                         f"{', '.join(ACTIONS)})")
    return action


def check_step(cfg: Config, pol: Policy, step: Step, where: str) -> Step:
    """`step` itself when it fits (cfg, pol); otherwise UsageError naming the field."""
    check_action(step.action, where)
    names = slot_names(step.action)
    if len(step.slots) != len(names):
        raise UsageError(f"{where}: action '{step.action}' takes {' and '.join(names) or 'no'}"
                         f" slot(s), got {len(step.slots)}")
    for n, v in zip(names, step.slots):
        size = cfg.K if n == "claim" else cfg.R
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < size:
            raise UsageError(f"{where}: {n} slot {shown(v)} is out of range 0..{size - 1} "
                             f"(the configuration has {size} {n}s)")
    sorts = choice_sorts(cfg, pol, step.action)
    for k, v in step.choices:
        if k not in sorts:
            raise UsageError(f"{where}: action '{step.action}' has no choice {shown(k)}"
                             + (f" (it has {', '.join(sorts)})" if sorts else ""))
        if sorts[k] == "bool":
            if not isinstance(v, bool):
                raise UsageError(f"{where}: choice '{k}' must be a boolean, got {shown(v)}")
        elif isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_BLOCKS:
            raise UsageError(f"{where}: choice '{k}' must be an integer 0..{MAX_BLOCKS}, "
                             f"got {shown(v)}")
    return step

