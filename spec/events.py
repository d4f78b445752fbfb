"""Events (docs/CONTRACT.md section 7) as the spec emits them.

Each action emits its events through an `EventLog`: the log advances the sequence number
(a term in both interpretations, so O4 and O9 can compare event order) and, when concrete,
records the events themselves for traces, telemetry and the observer."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


# Event types shared by the spec, the MicroRuntime's telemetry and the vLLM arbiter.
EVENT_TYPES = (
    "claim_submitted", "claim_accepted", "claim_rejected", "claim_materialized",
    "claim_harmed", "claim_demoted", "claim_expired", "claim_released", "release_denied",
    "conflict", "request_admitted", "request_deferred", "request_refused", "request_finished",
    "victim", "object_stored", "prefix_hit",
)


@dataclass(frozen=True)
class Event:
    seq: int
    type: str
    fields: Dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> Dict[str, Any]:
        return {"seq": self.seq, "type": self.type, **self.fields}


class EventLog:
    def __init__(self, ops, seq, record: bool):
        self.ops = ops
        self.seq = seq
        self.events: Optional[List[Event]] = [] if record else None

    def emit(self, cond, type_: str, **fields):
        """Emit `type_` when `cond` holds; returns the sequence number it would carry."""
        assert type_ in EVENT_TYPES, type_
        self.seq = self.seq + self.ops.If(cond, 1, 0)
        if self.events is not None and cond:
            self.events.append(Event(self.seq, type_, dict(fields)))
        return self.seq
