"""Events (docs/CONTRACT.md section 7) as the spec emits them.

Each action emits its events through an `EventLog`: the log advances the sequence number
(a term in both interpretations, so O4 and O9 can compare event order) and, when concrete,
records the events themselves for traces, telemetry and the observer."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from .vocab import ClaimStatus as CS, RequestStatus as RS


# Event types shared by the spec, the MicroRuntime's telemetry and the vLLM arbiter.
EVENT_TYPES = (
    "claim_submitted", "claim_accepted", "claim_rejected", "claim_materialized",
    "claim_harmed", "claim_demoted", "claim_expired", "claim_released", "release_denied",
    "conflict", "request_admitted", "request_deferred", "request_refused", "request_finished",
    "victim", "object_stored", "prefix_hit",
    # the last event of a run: a trace without it is incomplete (cut at the tail)
    "run_closed",
)

# The status each lifecycle event announces: an observer's reconstruction (O6) is this map
# applied to the events, and nothing else.
CLAIM_EVENT_STATUS = {
    "claim_submitted": CS.SUBMITTED, "claim_accepted": CS.ACCEPTED,
    "claim_rejected": CS.REJECTED, "claim_materialized": CS.MATERIALIZED,
    "claim_harmed": CS.HARMED, "claim_demoted": CS.DEMOTED, "claim_expired": CS.EXPIRED,
    "claim_released": CS.RELEASED,
}
REQUEST_EVENT_STATUS = {
    "request_admitted": RS.RUNNING, "request_deferred": RS.DEFERRED,
    "request_refused": RS.REFUSED, "request_finished": RS.FINISHED,
}


@dataclass(frozen=True)
class Event:
    seq: int
    type: str
    fields: Dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> Dict[str, Any]:
        return {"seq": self.seq, "type": self.type, **self.fields}


class EventLog:
    """`claim_last` / `request_last`: per slot, the status announced by the latest lifecycle
    event (the abstract event history); emit() is the only writer, so the history moves with
    events and never with a status assignment."""

    def __init__(self, ops, seq, record: bool, claim_last: Sequence[Any] = (),
                 request_last: Sequence[Any] = ()):
        self.ops = ops
        self.seq = seq
        self.events: Optional[List[Event]] = [] if record else None
        self.claim_last = list(claim_last)
        self.request_last = list(request_last)

    def emit(self, cond, type_: str, **fields):
        """Emit `type_` when `cond` holds; returns the sequence number it would carry."""
        assert type_ in EVENT_TYPES, type_
        self.seq = self.seq + self.ops.If(cond, 1, 0)
        if type_ in CLAIM_EVENT_STATUS and self.claim_last:
            i = fields["claim_id"]
            self.claim_last[i] = self.ops.If(cond, int(CLAIM_EVENT_STATUS[type_]),
                                             self.claim_last[i])
        if type_ in REQUEST_EVENT_STATUS and self.request_last:
            j = fields["request_id"]
            self.request_last[j] = self.ops.If(cond, int(REQUEST_EVENT_STATUS[type_]),
                                               self.request_last[j])
        if self.events is not None and cond:
            self.events.append(Event(self.seq, type_, dict(fields)))
        return self.seq
