"""Obligation bundles per protection mode, and which litmus cases witness which obligation.

Both are derived from the spec's own tables (kvclaims.spec.obligations.OBLIGATIONS and the
mode sets of kvclaims.spec.vocab), so an obligation added to the spec lands in every bundle
at once and, having no evidence yet, turns every row that needs it to unknown (fail closed)."""
from __future__ import annotations

from typing import Dict, Tuple

from kvclaims.spec.obligations import OBLIGATIONS
from kvclaims.spec.vocab import Mode, PROTECTED_MODES

MODE_NAMES = tuple(m.name.lower() for m in Mode)

# Obligations stated only over protecting claims or the conflicts they cause (CONTRACT.md
# section 6): O3 protected blocks are never ordinary victims, O4 release before loss of a
# protecting claim, O8 refusals name the protecting claims in the way, O2 the no-admit
# answer to such a conflict.  A soft, best-effort or offloadable claim never blocks a
# request, so its lowering owes the rest of the table and not these.
PROTECTION_ONLY = ("O2", "O3", "O4", "O8")


def _order(ob: str):
    # O10 after O9: obligation ids compare by their number, unknown shapes last
    digits = "".join(ch for ch in ob if ch.isdigit())
    return (int(digits) if digits else 1 << 30, ob)


def bundle(mode: str) -> Tuple[str, ...]:
    """The obligations a lowering of `mode` must evidence, in the spec's order."""
    m = Mode[mode.upper()]
    obs = sorted(OBLIGATIONS, key=_order)
    if m in PROTECTED_MODES:
        return tuple(obs)
    return tuple(o for o in obs if o not in PROTECTION_ONLY)


BUNDLES: Dict[str, Tuple[str, ...]] = {m: bundle(m) for m in MODE_NAMES}

# Litmus cases (CONTRACT.md section 8, checker/litmus/*.toml, plus the conformance scenarios
# in checker/conform/litmus/) and the obligations a passing run of each under a conformant
# policy witnesses.  A case witnesses an obligation only when the run also reports that the
# spec, replaying the target's own choices, saw the obligation hold.
WITNESSES: Dict[str, Tuple[str, ...]] = {
    "L1": ("O1",),                      # ordinary eviction is not harm
    "L2": ("O2", "O13"),                # no-admit leaves live blocks as they are; the
                                        # hard claim is never harmed (write_no_admit breaks it)
    "L3": ("O3", "O7", "O8", "O16"),    # pressure: no protected victim (a hold, not a
                                        # preference), the blocking claim named, the
                                        # conflict's shortfall and verdict the true ones
    "L4": ("O4", "O9", "O13"),          # demotion event before the later loss (of a
                                        # demotable claim)
    "L5": ("O4", "O9", "O13", "O14"),   # expiry event before the later loss; the deferred
                                        # request waits exactly response_ticks (late_release
                                        # demoting the expiring claim breaks O13)
    "L6": ("O5",),                      # predicate over positions, not block count
    "L7": ("O6", "O16"),                # the trace alone reconstructs the outcome,
                                        # the conflict events' content included
    "I1": ("O10",),                     # non-owner release refused, no cross-identity reuse
}
# Where an obligation's meaning depends on the mode, only the case about that mode counts:
# release before loss of a demotable claim is shown by a demotion, of an expiring one by an
# expiry.
MODE_WITNESSES: Dict[Tuple[str, str], Tuple[str, ...]] = {
    ("demotable", "O4"): ("L4",),
    ("expiring", "O4"): ("L5",),
    # mode honesty is about the mode: only the case whose claim has that mode shows it
    ("hard_protected", "O13"): ("L2",),
    ("demotable", "O13"): ("L4",),
    ("expiring", "O13"): ("L5",),
}
# No case exercises O11 (every case's claim fits the cap exactly; none submits one over it),
# O12 (every request needs more than the headroom, except I1's, whose claim cannot exceed the
# cap) or O15 (no case offers a runtime a feasible request to refuse spuriously): they stay
# without evidence and the rows that need them fail closed.


def witnesses(mode: str, ob: str) -> Tuple[str, ...]:
    """Litmus case ids whose passing run evidences `ob` for a lowering of `mode`."""
    if (mode, ob) in MODE_WITNESSES:
        return MODE_WITNESSES[(mode, ob)]
    return tuple(c for c, obs in WITNESSES.items() if ob in obs)
