"""Importer for the telemetry schema of the paper's public artifact (schema_version 1, the
patched vLLM 0.19.1 prototype; its docs/telemetry_schema.md) into the normal form
(checker/trace_read.py).  Written from that schema's documentation and the field names its
traces carry; no code of that repository is used.

Every artifact event is either mapped to spec events, folded into one (and counted in a
note), listed as *unmodelled* (the spec has no offload tier and no live bounding), or listed as
*unknown*.  Nothing is dropped silently.

Block identity is what makes losses judgeable by the predicate (O5): a physical block reported
by `resident_block_materialized` carries its prefix and logical position, so a later
`allocation_victim_selected` of that physical block is a loss of exactly that position, whatever
the victim event itself says."""
from __future__ import annotations

import re
from collections import Counter
from typing import Any, Dict, List, Optional, Tuple

from kvclaims.errors import UsageError
from kvclaims.model.telemetry import SCHEMA_VERSION

from .trace_read import ImportedTrace

# artifact protection modes -> the contract's (CONTRACT.md section 3); `hard_exclude` is the
# prototype's name for a hard claim whose blocks are excluded from the evictable set
MODES = {"hard_exclude": "hard_protected", "hard_protected": "hard_protected",
         "hard": "hard_protected", "soft_priority": "soft_priority", "soft": "soft_priority",
         "demotable": "demotable", "offloadable": "offloadable", "expiring": "expiring",
         "best_effort": "best_effort"}

CLAIM_EVENTS = {"resident_claim_created": "claim_submitted",
                "resident_claim_accepted": "claim_accepted",
                "resident_claim_refused": "claim_rejected",
                "resident_claim_materialized": "claim_materialized",
                "resident_claim_harmed": "claim_harmed",
                "resident_claim_relaxed": "claim_demoted",
                "resident_claim_demoted": "claim_demoted",
                "resident_claim_expired": "claim_expired",
                "resident_claim_released": "claim_released"}
# the offload tier and live bounding exist in the contract but not in the spec (vocab.py:
# UNMODELLED_MODES): reported, and they leave O9's offload clause not evidenced
UNMODELLED = ("resident_claim_offloaded", "resident_claim_restore_required",
              "resident_claim_restored", "resident_claim_reuse_after_restore",
              "resident_claim_restoration_failed", "active_live_bounded")
# statements that carry no transition of their own: counted in a note
FOLDED = ("resident_claim_preserved", "future_reuse_admitted", "future_reuse_denied",
          "resident_claim_block_lost_after_release")

_PRED = re.compile(r"^\s*(leading_prefix_at_least|contiguous_range)\s*\(([^)]*)\)\s*$")


def parse_predicate(ev: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The claim's materialization predicate from `materialization_predicate` ("kind(args)")
    or from `predicate` (kind) with `resident_blocks_required` (k)."""
    text = ev.get("materialization_predicate")
    if isinstance(text, str):
        m = _PRED.match(text)
        if m:
            args = [int(a) for a in m.group(2).split(",") if a.strip()]
            if m.group(1) == "leading_prefix_at_least" and len(args) == 1:
                return {"kind": "leading_prefix_at_least", "k": args[0]}
            if m.group(1) == "contiguous_range" and len(args) == 2:
                return {"kind": "contiguous_range", "start": args[0], "k": args[1]}
    k = ev.get("useful_threshold_blocks", ev.get("resident_blocks_required"))
    if isinstance(k, int) and ev.get("predicate", "leading_prefix_at_least") == \
            "leading_prefix_at_least":
        return {"kind": "leading_prefix_at_least", "k": k}
    return None


class _Importer:
    def __init__(self, path: str):
        self.path = path
        self.out: List[Dict[str, Any]] = []
        self.unknown: List[Tuple[int, str]] = []
        self.unmodelled: List[Tuple[int, str]] = []
        self.folded: Counter = Counter()
        self.notes: List[str] = []
        self.claims: Dict[str, Dict[str, Any]] = {}      # claim id -> what it said of itself
        self.block: Dict[Any, Tuple[str, int]] = {}       # physical id -> (prefix, position)
        self.owner: Dict[Any, Any] = {}                    # physical id -> allocating request
        self.prefill: set = set()      # requests whose blocks became a reported prefix
        self.burst: Optional[Dict[str, Any]] = None        # materialization being reported
        self.deferred: set = set()
        self.lost: set = set()                              # physical ids already lost
        # request -> [blocks allocated, position in `out` after its last allocation, pids]
        self.allocs: Dict[Any, List[Any]] = {}
        self.decided: set = set()                           # requests with an outcome event
        self.reuse_decision: Dict[Any, bool] = {}           # future_reuse_admitted / _denied
        self.admitted: Dict[str, Dict[str, Any]] = {}      # request -> its admission event
        self.run_id: Optional[str] = None
        self.usable: Optional[int] = None
        self.policy: Optional[str] = None

    # --- output in the normal form ----------------------------------------------------------

    def emit(self, type_: str, line: int, **fields) -> Dict[str, Any]:
        ev = {"schema_version": SCHEMA_VERSION, "seq": len(self.out) + 1, "type": type_,
              "run_id": self.run_id, "policy": self.policy, "usable_blocks": self.usable,
              "line": line}
        ev.update(fields)
        self.out.append(ev)
        return ev

    def claim_fields(self, cid: Optional[str]) -> Dict[str, Any]:
        c = self.claims.get(cid, {})
        return {"claim_id": cid, "object_id": c.get("object_id"),
                "protection_mode": c.get("protection_mode"), "predicate": c.get("predicate")}

    def learn_claim(self, ev: Dict[str, Any]) -> None:
        cid = ev.get("claim_id")
        if not cid:
            return
        c = self.claims.setdefault(cid, {})
        if ev.get("prefix_id") is not None:
            c.setdefault("object_id", ev["prefix_id"])
        mode = ev.get("protection_mode")
        if isinstance(mode, str):
            if mode not in MODES:
                self.notes.append(f"claim {cid}: unknown protection mode {mode!r}")
            c.setdefault("protection_mode", MODES.get(mode, mode))
        pred = parse_predicate(ev)
        if pred is not None:
            c.setdefault("predicate", pred)
        for k in ("resident_blocks_required", "block_count_footprint"):
            if isinstance(ev.get(k), int):
                c.setdefault("footprint_blocks", ev[k])
        if ev.get("cache_identity") is not None:
            c.setdefault("cache_identity", ev["cache_identity"])

    # --- materialization bursts -------------------------------------------------------------

    def flush_burst(self) -> None:
        """A prefix's block reports end: it is stored (one spec step), then any claim
        materialization reported inside the burst is emitted after it."""
        b, self.burst = self.burst, None
        if b is None:
            return
        pos = sorted(b["positions"])
        if pos != list(range(len(pos))):
            self.notes.append(f"prefix {b['prefix']}: materialized positions are not 0..n-1")
        self.emit("object_stored", b["line"], object_id=b["prefix"], blocks=len(pos))
        if b["held"]:
            self.notes.append(f"prefix {b['prefix']}: claim materialization logged inside its "
                              f"block burst, before position {max(pos)}; read as one step")
        for line, ev in b["held"]:
            self.claim_event(line, ev)

    def block_materialized(self, line: int, ev: Dict[str, Any]) -> None:
        prefix, pos = ev.get("prefix_id"), ev.get("logical_block_position")
        if self.burst is not None and self.burst["prefix"] != prefix:
            self.flush_burst()
        if self.burst is None:
            self.burst = {"prefix": prefix, "line": line, "positions": set(), "held": []}
        if isinstance(pos, int):
            self.burst["positions"].add(pos)
        if ev.get("physical_block_id") is not None:
            self.block[ev["physical_block_id"]] = (prefix, pos)
            if ev["physical_block_id"] in self.owner:
                self.prefill.add(self.owner[ev["physical_block_id"]])

    # --- per event --------------------------------------------------------------------------

    def claim_event(self, line: int, ev: Dict[str, Any]) -> None:
        name = ev["event"]
        type_ = CLAIM_EVENTS[name]
        cid = ev.get("claim_id")
        if type_ in ("claim_accepted", "claim_rejected") and cid and \
                not self.claims.get(cid, {}).get("submitted"):
            # the prototype registers and decides in one call: the submission is implied
            self.emit("claim_submitted", line, implied=True, **self.claim_fields(cid),
                      footprint_blocks=self.claims.get(cid, {}).get("footprint_blocks"),
                      cache_identity=self.claims.get(cid, {}).get("cache_identity"))
        if cid:
            self.claims.setdefault(cid, {})["submitted"] = True
        extra = {}
        if type_ == "claim_submitted":
            extra = {"footprint_blocks": self.claims.get(cid, {}).get("footprint_blocks"),
                     "cache_identity": self.claims.get(cid, {}).get("cache_identity")}
        if type_ == "claim_demoted":
            extra = {"request_id": None, "arbiter_action": ev.get("arbiter_action")}
        if type_ == "claim_harmed":
            extra = {"cause": ev.get("victim_reason") or ev.get("cause"),
                     "request_id": ev.get("request_id")}
        self.emit(type_, line, **self.claim_fields(cid), **extra)

    def allocation(self, ev: Dict[str, Any]) -> None:
        """Count what a request allocates: a request whose allocations the trace shows but
        whose admission it does not is admitted implicitly (see implied_admissions)."""
        if ev["event"] != "allocation_victim_selected":
            return
        a = self.allocs.setdefault(ev.get("request_id"), [0, 0])
        a[0] += 1
        self.owner[ev.get("physical_block_id")] = ev.get("request_id")

    def victim(self, line: int, ev: Dict[str, Any]) -> None:
        pid = ev.get("physical_block_id")
        self.allocation(ev)
        if pid in self.lost and ev["event"] == "allocation_victim_selected":
            # the loss event for this block came first (loss after release): one loss
            self.lost.discard(pid)
            self.folded["allocation_victim_selected (block already reported lost)"] += 1
        elif pid in self.block:
            prefix, pos = self.block.pop(pid)
            if ev["event"] != "allocation_victim_selected":
                self.lost.add(pid)
            self.emit("victim", line, object_id=prefix, logical_position=pos, blocks=1,
                      block_id=pid, protected=ev.get("is_protected_resident"),
                      reason=ev.get("victim_reason"), claim_id=ev.get("claim_id"),
                      request_id=ev.get("request_id"))
        elif ev.get("block_hash") is not None and ev["event"] == "allocation_victim_selected":
            # a cached block nobody materialized as a claimed prefix: ordinary cache
            self.emit("victim", line, object_id=None, blocks=1, block_id=pid, protected=False,
                      reason=ev.get("victim_reason"), request_id=ev.get("request_id"))
        else:
            # a free, never-hashed block handed to an allocation: no loss, no spec event
            self.folded["allocation_victim_selected (free block)"] += 1
        if ev.get("request_id") in self.allocs:
            self.allocs[ev.get("request_id")][1] = len(self.out)

    def implied_admissions(self) -> None:
        """A request that allocated blocks, none of which then became a reported prefix block, with
        no admission, deferral or refusal in the trace, was admitted: the trace fixes its live
        blocks (what it allocated).  The admission is implied, placed after its last
        allocation."""
        todo = [(at, rid, n) for rid, (n, at) in self.allocs.items()
                if rid not in self.decided and rid not in self.prefill]
        for at, rid, n in sorted(todo, key=lambda t: t[0], reverse=True):
            ev = {"schema_version": SCHEMA_VERSION, "type": "request_admitted",
                  "run_id": self.run_id, "policy": self.policy, "usable_blocks": self.usable,
                  "line": self.out[at - 1]["line"] if at else 0, "request_id": rid,
                  "live_blocks": n, "admit_future_reuse": self.reuse_decision.get(rid),
                  "implied": True}
            self.out.insert(at, ev)
            self.notes.append(f"request {rid}: {n} blocks allocated, no admission event; "
                              f"admission implied")
        for n, ev in enumerate(self.out, start=1):
            ev["seq"] = n

    def conflict(self, line: int, ev: Dict[str, Any], action: str, implied=False) -> None:
        names = ev.get("blocking_claim_ids")
        feas = ev.get("feasibility")
        if isinstance(feas, str):
            feas = "infeasible" if feas.startswith("infeasible") else feas
        self.emit("conflict", line, request_id=ev.get("request_id"),
                  blocking_claim_ids=list(names) if isinstance(names, list) else None,
                  protected_resident_blocks=ev.get("protected_resident_blocks"),
                  active_live_blocks_required=ev.get("active_live_blocks_required"),
                  resident_plus_active_blocks=ev.get("resident_plus_active_blocks"),
                  capacity_shortfall_blocks=ev.get("capacity_shortfall_blocks"),
                  free_blocks_before_allocate=ev.get("free_blocks_before_allocate"),
                  feasibility=feas, arbiter_action=action,
                  runtime_action=ev.get("arbiter_action"), **({"implied": True} if implied
                                                              else {}))

    def request(self, line: int, ev: Dict[str, Any]) -> None:
        name, rid = ev["event"], ev.get("request_id")
        self.decided.add(rid)
        if name == "active_request_admitted":
            adm = ev.get("future_reuse_admitted")
            live = ev.get("active_live_blocks_current")
            if not isinstance(live, int) or live <= 0:
                live = ev.get("active_live_blocks_required")
            if ev.get("arbiter_action") == "serve_no_admit":
                # served against the claims with reuse denied: the arbiter's conflict record,
                # with the live KV it believed it needed (O2 compares it with what it took)
                self.conflict(line, ev, "serve_no_admit")
            self.admitted[rid] = self.emit(
                "request_admitted", line, request_id=rid, live_blocks=live,
                admit_future_reuse=adm if isinstance(adm, bool) else None)
        elif name == "active_request_deferred":
            if ev.get("arbiter_action") is not None or ev.get("blocking_claim_ids") is not None:
                self.conflict(line, ev, "defer")
            # else: the request waits with no arbitration (a native runtime): no conflict
            self.emit("request_deferred", line, request_id=rid,
                      blocking_claim_ids=ev.get("blocking_claim_ids"))
            self.deferred.add(rid)
        else:
            if rid not in self.deferred:
                # a refusal decided at once: the deferral the spec orders before it carries
                # the same conflict record, so it is implied, not evidence
                self.conflict(line, ev, "defer", implied=True)
                self.emit("request_deferred", line, request_id=rid, implied=True,
                          blocking_claim_ids=ev.get("blocking_claim_ids"))
                self.deferred.add(rid)
            self.conflict(line, ev, "refuse")
            self.emit("request_refused", line, request_id=rid,
                      blocking_claim_ids=ev.get("blocking_claim_ids"))

    def future_reuse(self, ev: Dict[str, Any]) -> None:
        """The admission decision, reported apart from the admission: it is the spec's admit
        choice, so it completes that request's admission event."""
        yes = ev["event"] == "future_reuse_admitted"
        adm = self.admitted.get(ev.get("request_id"))
        if adm is not None and adm.get("admit_future_reuse") is None:
            adm["admit_future_reuse"] = yes
        self.reuse_decision.setdefault(ev.get("request_id"), yes)

    def feed(self, line: int, ev: Dict[str, Any], last_ts: List[int]) -> None:
        if ev.get("schema_version") != 1:
            raise UsageError(f"{self.path}:{line}: unknown schema version "
                             f"{ev.get('schema_version')!r} in an artifact-v1 trace")
        name = ev.get("event")
        if not isinstance(name, str):
            raise UsageError(f"{self.path}:{line}: event without an 'event' name")
        ts = ev.get("timestamp_ns")
        if isinstance(ts, int):
            if last_ts and ts < last_ts[0]:
                raise UsageError(f"{self.path}:{line}: reordered: timestamp_ns goes back")
            last_ts[:] = [ts]
        if self.run_id is None:
            self.run_id, self.policy = ev.get("run_id"), ev.get("policy")
        elif ev.get("run_id") != self.run_id:
            raise UsageError(f"{self.path}:{line}: event of run {ev.get('run_id')!r} in run "
                             f"{self.run_id!r}")
        if isinstance(ev.get("usable_blocks"), int) and self.usable is None:
            self.usable = ev["usable_blocks"]
        self.learn_claim(ev)
        if name == "resident_block_materialized":
            self.block_materialized(line, ev)
            return
        if name == "resident_claim_materialized" and self.burst is not None and \
                self.claims.get(ev.get("claim_id"), {}).get("object_id") == self.burst["prefix"]:
            self.burst["held"].append((line, ev))
            return
        self.flush_burst()
        if name in CLAIM_EVENTS:
            self.claim_event(line, ev)
        elif name == "allocation_victim_selected":
            self.victim(line, ev)
        elif name in ("active_request_admitted", "active_request_deferred",
                      "active_request_refused"):
            self.request(line, ev)
        elif name == "active_request_finished":
            # not in the artifact's schema: our exporter's extension (a finish frees live KV)
            self.decided.add(ev.get("request_id"))
            self.emit("request_finished", line, request_id=ev.get("request_id"))
        elif name in ("future_reuse_admitted", "future_reuse_denied"):
            self.future_reuse(ev)
            self.folded[name] += 1
        elif name == "resident_claim_block_lost_after_release":
            if ev.get("physical_block_id") in self.block:
                self.victim(line, ev)
            else:
                self.folded[name + " (same block as a victim event)"] += 1
        elif name in FOLDED:
            self.folded[name] += 1
        elif name in UNMODELLED:
            self.unmodelled.append((line, name))
        else:
            self.unknown.append((line, name))


def import_artifact(path: str, lines) -> ImportedTrace:
    imp = _Importer(path)
    last_ts: List[int] = []
    for n, ev in lines:
        imp.feed(n, ev, last_ts)
    imp.flush_burst()
    imp.implied_admissions()
    if imp.usable is None:
        raise UsageError(f"{path}: no event carries usable_blocks")
    for ev in imp.out:     # the first events may precede the first usable_blocks
        ev["usable_blocks"] = imp.usable
    notes = imp.notes + [f"{name}: {k} folded" for name, k in sorted(imp.folded.items())]
    return ImportedTrace(path, "artifact-v1", len(lines), imp.out, imp.unknown, imp.unmodelled,
                         notes)
