"""Enumerations of the contract's vocabulary (docs/CONTRACT.md sections 3, 4, 7), as ints so that
the same values serve as Python data and as z3 integer constants."""
from __future__ import annotations

from enum import IntEnum


class ClaimStatus(IntEnum):
    """Claim lifecycle (docs/CONTRACT.md section 4). NONE: the slot holds no claim yet."""
    NONE = 0
    SUBMITTED = 1
    ACCEPTED = 2
    REJECTED = 3
    MATERIALIZED = 4
    DEMOTED = 5
    EXPIRED = 6
    RELEASED = 7
    HARMED = 8


# A claim is under runtime responsibility while accepted or materialized (section 4).
RESPONSIBLE = (ClaimStatus.ACCEPTED, ClaimStatus.MATERIALIZED)
# Released from responsibility by a named, emitted event (O4's "release before loss").
ENDED_BY_RELEASE = (ClaimStatus.DEMOTED, ClaimStatus.EXPIRED, ClaimStatus.RELEASED)
ENDED = ENDED_BY_RELEASE + (ClaimStatus.HARMED,)


class Mode(IntEnum):
    """Protection modes (docs/CONTRACT.md section 3)."""
    HARD_PROTECTED = 0
    SOFT_PRIORITY = 1
    DEMOTABLE = 2
    OFFLOADABLE = 3
    EXPIRING = 4
    BEST_EFFORT = 5


# Modes whose resident blocks may not be ordinary eviction victims while the claim is under
# responsibility.  Soft and best-effort claims only ask for preference: their loss is allowed
# but, when it breaks the predicate, it is harm and must be emitted.
PROTECTED_MODES = (Mode.HARD_PROTECTED, Mode.DEMOTABLE, Mode.EXPIRING)
# No offload tier is modelled, so a conformant runtime rejects offloadable claims (fail closed).
UNMODELLED_MODES = (Mode.OFFLOADABLE,)


class RequestStatus(IntEnum):
    """An active request's state."""
    NONE = 0
    DEFERRED = 1
    RUNNING = 2
    FINISHED = 3
    REFUSED = 4


class Primitive(IntEnum):
    """What a runtime lowers a claim onto (O7 capability honesty)."""
    PIN = 0          # blocks held out of the evictable set
    PREFERENCE = 1   # only eviction preference (priority, retention duration)


class Lowering(IntEnum):
    """Lowering verdict of a (primitive, mode) pair (docs/CONTRACT.md O7, C1)."""
    SOUND = 0
    APPROXIMATE = 1
    UNSOUND = 2


def lowering_verdict(primitive: Primitive, mode: Mode) -> Lowering:
    """O7: a preference-only primitive is unsound for a hard claim, approximate for others."""
    if primitive == Primitive.PIN:
        return Lowering.SOUND
    if mode in PROTECTED_MODES:
        return Lowering.UNSOUND
    return Lowering.APPROXIMATE


class Feasibility(IntEnum):
    """Feasibility verdict carried by a conflict event."""
    WAIT = 0         # fits once running requests finish
    INFEASIBLE = 1   # protected resident + active live > usable: nothing fits
