"""O6: an observer that holds only an event trace (JSON Lines) and reconstructs what happened:
each claim's lifecycle, each conflict (blocking claims, shortfall, feasibility, action), each
request's and claim's final outcome; and findings where the trace shows a breach:

  truncated / reordered / mixed_runs   the trace is not one whole run in order
  lifecycle           O9: a claim event out of order (materialized before accepted, ...)
  protected_victim    O3: a block the runtime itself marks protected was an ordinary victim
  unreported_loss     O5/O6: a materialized claim lost a predicate position and no harm (or
                      release before it) was reported
  release_after_loss  O4: a demotion/expiry announced after the claim's blocks were lost
  misattribution      O8: a conflict named claims other than those holding protected
                      resident blocks (judged from the trace's own residency record)
  live_underreported  O2: a conflict reported fewer live blocks than the request then took
  after_close         an event after the run-closing event (run_closed)

A trace that does not end with run_closed is *incomplete*: cut at the tail, it may hide the
events that would have been findings, so its verdict is "incomplete", never "whole".

It never trusts the runtime's state, and it works on any trace in the telemetry schema."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple

from kvclaims.errors import UsageError
from kvclaims.inputs import parse_json
from kvclaims.limits import MAX_BLOCKS, MAX_EVENTS

from .telemetry import SCHEMA_VERSION, schema_errors

CLAIM_STATUS = {"claim_submitted": "submitted", "claim_accepted": "accepted",
                "claim_rejected": "rejected", "claim_materialized": "materialized",
                "claim_harmed": "harmed", "claim_demoted": "demoted",
                "claim_expired": "expired", "claim_released": "released"}
REQUEST_STATUS = {"request_admitted": "running", "request_deferred": "deferred",
                  "request_refused": "refused", "request_finished": "finished"}
RESPONSIBLE = ("accepted", "materialized")
# what a runtime says about a claim right after (or instead of) the victims that hit it
ANNOUNCEMENTS = ("victim", "claim_harmed", "claim_demoted", "claim_expired")
PROTECTING = ("hard_protected", "demotable", "expiring")
# allowed predecessors of each claim status (O9)
ORDER = {"submitted": (None,), "accepted": ("submitted",), "rejected": ("submitted",),
         "materialized": ("accepted",), "harmed": RESPONSIBLE, "demoted": RESPONSIBLE,
         "expired": RESPONSIBLE, "released": RESPONSIBLE}


class TelemetryError(ValueError):
    """A telemetry file that cannot be read as events (the message names the line)."""


@dataclass(frozen=True)
class Finding:
    kind: str
    seq: int
    message: str
    claim_id: Optional[str] = None
    request_id: Optional[str] = None


@dataclass
class ClaimStory:
    claim_id: str
    object_id: Optional[str] = None
    protection_mode: Optional[str] = None
    predicate: Optional[Tuple[int, int]] = None      # (start, k)
    duration: Optional[int] = None
    status: str = "unknown"
    accepted_clock: Optional[int] = None
    history: List[Tuple[int, str]] = field(default_factory=list)
    harm_cause: Optional[str] = None
    pending_loss: Optional[int] = None               # seq of an unexplained predicate loss
    lost_since_accept: Optional[int] = None          # seq of the first loss while on record


@dataclass
class ConflictRecord:
    seq: int
    request_id: str
    blocking_claim_ids: Tuple[str, ...]
    protected_resident_blocks: Optional[int]
    active_live_blocks_required: Optional[int]
    capacity_shortfall_blocks: Optional[int]
    feasibility: Optional[str]
    arbiter_action: Optional[str]


@dataclass
class RequestStory:
    request_id: str
    status: str = "none"
    conflicts: List[ConflictRecord] = field(default_factory=list)


@dataclass
class Reconstruction:
    run_id: Optional[str] = None
    events: int = 0
    claims: Dict[str, ClaimStory] = field(default_factory=dict)
    requests: Dict[str, RequestStory] = field(default_factory=dict)
    conflicts: List[ConflictRecord] = field(default_factory=list)
    findings: List[Finding] = field(default_factory=list)
    closed: bool = False             # the run-closing event was seen

    @property
    def verdict(self) -> str:
        """whole: closed and no finding; breach: findings; incomplete: no run_closed (an
        incomplete trace with findings is still a breach: what it shows happened)."""
        if self.findings:
            return "breach"
        return "whole" if self.closed else "incomplete"

    def outcomes(self) -> Dict[str, str]:
        out = {f"claim:{k}": c.status for k, c in self.claims.items()}
        out.update({f"request:{k}": r.status for k, r in self.requests.items()})
        return out

    def to_json(self) -> Dict[str, Any]:
        return {"run_id": self.run_id, "events": self.events, "verdict": self.verdict,
                "closed": self.closed,
                "claims": {k: {"status": c.status, "object_id": c.object_id,
                               "history": [t for _, t in c.history],
                               "harm_cause": c.harm_cause} for k, c in self.claims.items()},
                "requests": {k: {"status": r.status,
                                 "conflicts": [x.seq for x in r.conflicts]}
                             for k, r in self.requests.items()},
                "conflicts": [c.__dict__ | {"blocking_claim_ids": list(c.blocking_claim_ids)}
                              for c in self.conflicts],
                "findings": [f.__dict__ for f in self.findings]}


# The observer keeps every stored object's resident positions: a stated bound on block counts
# and on their sum keeps a hostile trace from exhausting memory (kvclaims.limits).
MAX_LINE_BYTES = 1024 * 1024
MAX_RESIDENT_POSITIONS = 2 * MAX_BLOCKS
_BLOCK_FIELDS = ("usable_blocks", "blocks_required", "blocks_materialized",
                 "leading_blocks_survived", "footprint_blocks", "protected_resident_blocks",
                 "active_live_blocks_required", "resident_plus_active_blocks",
                 "capacity_shortfall_blocks", "free_blocks_before_allocate", "live_blocks",
                 "peak_live_blocks", "cached_blocks_hit", "block_id", "logical_position",
                 "blocks", "cap_blocks", "reserved_blocks")


def _bounded(ev: Dict[str, Any]) -> Optional[str]:
    """The first block-count field beyond MAX_BLOCKS, as a message."""
    pred = ev.get("predicate")
    fields = [(k, ev.get(k)) for k in _BLOCK_FIELDS]
    if isinstance(pred, dict):
        fields += [(f"predicate.{k}", pred.get(k)) for k in ("start", "k")]
    for k, v in fields:
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) > MAX_BLOCKS:
            return f"'{k}' = {v} is beyond the limit of {MAX_BLOCKS} blocks"
    return None


def _lines(path: str):
    """(line number, text) of a JSON Lines file, bounded in line length and count."""
    try:
        fh = open(path, "rb")
    except OSError as e:
        raise TelemetryError(f"{path}: cannot read: {e.strerror}") from None
    with fh:
        for n, raw in enumerate(iter(lambda: fh.readline(MAX_LINE_BYTES + 1), b""), start=1):
            if n > MAX_EVENTS:
                raise TelemetryError(f"{path}: more than the limit of {MAX_EVENTS} events")
            if len(raw) > MAX_LINE_BYTES:
                raise TelemetryError(f"{path}:{n}: line longer than the limit of "
                                     f"{MAX_LINE_BYTES} bytes")
            try:
                yield n, raw.decode("utf-8"), raw.endswith(b"\n")
            except UnicodeDecodeError as e:
                raise TelemetryError(f"{path}:{n}: not UTF-8 (byte {e.start})") from None


def json_lines(path: str) -> List[Tuple[int, Dict[str, Any]]]:
    """(line number, object) of every non-blank line, bounded (kvclaims.limits); TelemetryError
    names the first bad line.  A last line cut short (no newline, not JSON) is reported as
    truncated: the writer stopped."""
    if os.path.isdir(path):
        raise TelemetryError(f"{path}: is a directory, expected a JSON Lines file")
    out = []
    for n, line, complete in _lines(path):
        if not line.strip():
            continue
        try:
            ev = parse_json(line, f"{path}:{n}")
        except UsageError as e:
            if not complete and "not JSON" in str(e):
                raise TelemetryError(f"{path}:{n}: truncated (last line is not a whole "
                                     f"event)") from None
            raise TelemetryError(str(e)) from None
        if not isinstance(ev, dict):
            raise TelemetryError(f"{path}:{n}: an event must be a JSON object")
        out.append((n, ev))
    return out


def read_jsonl(path: str, validate: bool = True) -> List[Dict[str, Any]]:
    """Events of a JSON Lines file; TelemetryError names the first bad line."""
    out = []
    for n, ev in json_lines(path):
        if validate:
            errs = schema_errors(ev)
            if errs:
                raise TelemetryError(f"{path}:{n}: not a telemetry event: "
                                     f"{' '.join(str(errs[0]).split())[:300]}")
        too_big = _bounded(ev)
        if too_big:
            raise TelemetryError(f"{path}:{n}: {too_big}")
        out.append(ev)
    return out


class _Observer:
    def __init__(self):
        self.rec = Reconstruction()
        self.resident: Dict[str, Set[int]] = {}      # object -> resident logical positions
        self.clock = 0
        self.last_seq: Optional[int] = None

    def find(self, kind, seq, msg, claim=None, request=None):
        self.rec.findings.append(Finding(kind, seq, msg, claim, request))

    def claim(self, cid: str) -> ClaimStory:
        if cid not in self.rec.claims:
            self.rec.claims[cid] = ClaimStory(cid)
        return self.rec.claims[cid]

    def request(self, rid: str) -> RequestStory:
        if rid not in self.rec.requests:
            self.rec.requests[rid] = RequestStory(rid)
        return self.rec.requests[rid]

    def protecting(self, c: ClaimStory) -> bool:
        if c.status not in RESPONSIBLE or c.protection_mode not in PROTECTING:
            return False
        if c.protection_mode == "expiring" and c.duration and c.accepted_clock is not None:
            return self.clock < c.accepted_clock + c.duration
        return True

    def predicate_holds(self, c: ClaimStory) -> Optional[bool]:
        if c.predicate is None or c.object_id not in self.resident:
            return None
        s, k = c.predicate
        return all(p in self.resident[c.object_id] for p in range(s, s + k))

    # --- per event ------------------------------------------------------------------------------

    def order(self, ev) -> None:
        seq = ev.get("seq")
        rec = self.rec
        if rec.run_id is None:
            rec.run_id = ev.get("run_id")
        elif ev.get("run_id") != rec.run_id:
            self.find("mixed_runs", seq, f"event of run {ev.get('run_id')} in run {rec.run_id}")
        if self.last_seq is None:
            if seq != 1:
                self.find("truncated", seq, f"trace starts at seq {seq}, not 1")
        elif seq <= self.last_seq:
            self.find("reordered", seq, f"seq {seq} after seq {self.last_seq}")
        elif seq != self.last_seq + 1:
            self.find("truncated", seq, f"seq {self.last_seq + 1}..{seq - 1} missing")
        self.last_seq = seq if self.last_seq is None else max(seq, self.last_seq)
        if ev.get("schema_version") != SCHEMA_VERSION:
            self.find("schema", seq, f"schema version {ev.get('schema_version')!r}")

    def settle(self) -> None:
        """Any event but a victim or a claim's announcement about its loss closes the
        allocation (or eviction): losses still unexplained are findings."""
        for c in self.rec.claims.values():
            if c.pending_loss is not None:
                self.find("unreported_loss", c.pending_loss,
                          f"claim {c.claim_id} lost its predicate with no harm or release "
                          f"reported", claim=c.claim_id)
                c.pending_loss = None

    def claim_event(self, ev) -> None:
        seq, t = ev["seq"], ev["type"]
        c = self.claim(ev["claim_id"])
        new = CLAIM_STATUS[t]
        if ev.get("duplicate"):            # a second submission under a taken id
            c.history.append((seq, t))
            return
        prev = c.status if c.status != "unknown" else None
        if prev not in ORDER[new]:
            self.find("lifecycle", seq, f"claim {c.claim_id}: {t} after {prev or 'nothing'}",
                      claim=c.claim_id)
        if t == "claim_submitted":
            c.object_id = ev.get("object_id")
            c.protection_mode = ev.get("protection_mode")
            p = ev.get("predicate") or {}
            c.predicate = (p.get("start", 0), p.get("k", 0))
            c.duration = ev.get("duration")
        if t == "claim_accepted":
            c.accepted_clock = ev.get("clock", self.clock)
        if t == "claim_harmed":
            c.harm_cause = ev.get("cause")
            c.pending_loss = None
        if t in ("claim_demoted", "claim_expired") and (
                ev.get("late") or c.lost_since_accept is not None) \
                and c.protection_mode in PROTECTING:
            self.find("release_after_loss", seq,
                      f"claim {c.claim_id}: {t} announced after its blocks were lost",
                      claim=c.claim_id)
            c.pending_loss = None
        c.status = new
        c.history.append((seq, t))

    def victim(self, ev) -> None:
        seq, obj, pos = ev["seq"], ev.get("object_id"), ev.get("logical_position")
        if obj is None:
            return
        if obj in self.resident and pos is not None:
            self.resident[obj].discard(pos)
        for c in self.rec.claims.values():
            if c.object_id != obj or c.status not in RESPONSIBLE:
                continue
            if ev.get("protected") and c.protection_mode in PROTECTING:
                self.find("protected_victim", seq, f"protected block {pos} of claim "
                          f"{c.claim_id} chosen as a victim ({ev.get('reason')})",
                          claim=c.claim_id)
                if c.lost_since_accept is None:
                    c.lost_since_accept = seq
            if c.status == "materialized" and c.predicate and pos is not None \
                    and c.predicate[0] <= pos < sum(c.predicate) and c.pending_loss is None:
                c.pending_loss = seq

    def conflict(self, ev) -> None:
        seq, rid = ev["seq"], ev["request_id"]
        named = tuple(ev.get("blocking_claim_ids") or ())
        rec = ConflictRecord(seq, rid, named, ev.get("protected_resident_blocks"),
                             ev.get("active_live_blocks_required"),
                             ev.get("capacity_shortfall_blocks"), ev.get("feasibility"),
                             ev.get("arbiter_action"))
        self.rec.conflicts.append(rec)
        self.request(rid).conflicts.append(rec)
        if rec.arbiter_action in ("defer", "refuse"):
            # residency is known when the trace is whole from its first event: an object
            # never stored in it has no resident block
            known = not any(f.kind == "truncated" for f in self.rec.findings)
            truth = tuple(k for k, c in self.rec.claims.items()
                          if self.protecting(c) and self.resident.get(c.object_id))
            if known and set(named) != set(truth):
                self.find("misattribution", seq, f"request {rid}: named {list(named)}, "
                          f"blocking {list(truth)}", request=rid)

    def request_event(self, ev) -> None:
        r = self.request(ev["request_id"])
        r.status = REQUEST_STATUS[ev["type"]]
        if ev["type"] == "request_admitted":
            live = ev.get("live_blocks")
            for x in r.conflicts:
                if live is not None and x.active_live_blocks_required is not None \
                        and x.active_live_blocks_required < live:
                    self.find("live_underreported", x.seq, f"request {r.request_id}: conflict "
                              f"reported {x.active_live_blocks_required} live blocks, it took "
                              f"{live}", request=r.request_id)

    def feed(self, ev) -> None:
        self.rec.events += 1
        self.order(ev)
        if self.rec.closed:
            self.find("after_close", ev.get("seq"), f"{ev.get('type')} after run_closed")
        if ev.get("type") == "run_closed":
            self.settle()
            self.rec.closed = True
            return
        self.clock = ev.get("clock", self.clock)
        t = ev.get("type")
        if t == "victim":
            self.victim(ev)
            return
        if t not in ANNOUNCEMENTS:
            self.settle()
        if t in CLAIM_STATUS:
            self.claim_event(ev)
        elif t == "object_stored":
            # `positions`: the logical positions that became resident (a runtime whose
            # objects grow after acceptance); without it, the whole prefix of `blocks`.
            # Positions held are bounded so a hostile trace cannot exhaust memory.
            ps = ev.get("positions")
            if not isinstance(ps, list):
                self.resident.pop(ev["object_id"], None)
            held = sum(len(r) for r in self.resident.values()) + \
                (len(ps) if isinstance(ps, list) else ev.get("blocks", 0))
            if held > MAX_RESIDENT_POSITIONS:
                raise TelemetryError(f"event seq {ev.get('seq')}: more than the limit of "
                                     f"{MAX_RESIDENT_POSITIONS} resident block positions")
            if isinstance(ps, list):
                self.resident.setdefault(ev["object_id"], set()).update(
                    p for p in ps if isinstance(p, int))
            else:
                self.resident[ev["object_id"]] = set(range(ev.get("blocks", 0)))
        elif t == "conflict":
            self.conflict(ev)
        elif t in REQUEST_STATUS:
            self.request_event(ev)


def reconstruct(events: Iterable[Dict[str, Any]]) -> Reconstruction:
    """Rebuild the run from its events alone (in the order given: the order is judged)."""
    ob = _Observer()
    for ev in events:
        ob.feed(ev)
    ob.settle()
    return ob.rec


def observe_file(path: str) -> Reconstruction:
    events = read_jsonl(path)
    try:
        return reconstruct(events)
    except TelemetryError as e:
        raise TelemetryError(f"{path}: {e}") from None
