"""Writes the project's own telemetry (MicroRuntime, vLLM arbiter) in the artifact's schema 1,
so that the artifact importer is tested on traces we produce ourselves, with known verdicts,
and the project ships no copy of the artifact's files.

The artifact reports a prefix block by block (`resident_block_materialized` with logical and
physical ids) and an allocation victim by physical block; a request's finish has no event in
that schema, so it is written as `active_request_finished`, an extension the importer reads.
A no-admit conflict is carried by the admission (`arbiter_action` serve_no_admit, the live KV
the arbiter reported in `active_live_blocks_required`, the live KV held in
`active_live_blocks_current`)."""
from __future__ import annotations

import json
from typing import Any, Dict, Iterable, List

from .import_artifact_v1 import MODES

# the contract's mode names -> the prototype's (hard claims are `hard_exclude` there)
MODE_OUT = {v: k for k, v in MODES.items() if k not in ("hard", "hard_protected", "soft")}

CLAIM_OUT = {"claim_submitted": "resident_claim_created",
             "claim_accepted": "resident_claim_accepted",
             "claim_rejected": "resident_claim_refused",
             "claim_materialized": "resident_claim_materialized",
             "claim_harmed": "resident_claim_harmed",
             "claim_demoted": "resident_claim_demoted",
             "claim_expired": "resident_claim_expired",
             "claim_released": "resident_claim_released"}


def _predicate_text(p) -> str:
    if not isinstance(p, dict):
        return ""
    if p.get("kind") == "contiguous_range":
        return f"contiguous_range({p.get('start', 0)},{p['k']})"
    return f"leading_prefix_at_least({p['k']})"


class _Exporter:
    def __init__(self, events: List[Dict[str, Any]]):
        self.src = events
        self.out: List[Dict[str, Any]] = []
        self.pid: Dict[Any, int] = {}          # (object, position) -> physical block id
        self.next_pid = 1                       # block 0 is vLLM's null block
        self.claim_of: Dict[Any, Any] = {}      # object -> claim id
        self.ts = 0

    def emit(self, src: Dict[str, Any], event: str, **fields) -> None:
        self.ts += 1000
        ev = {"schema_version": 1, "timestamp_ns": self.ts, "run_id": src.get("run_id", "run"),
              "event": event, "request_id": None, "claim_id": None, "prefix_id": None,
              "policy": src.get("policy"), "usable_blocks": src.get("usable_blocks")}
        ev.update(fields)
        self.out.append(ev)

    def block(self, obj, pos) -> int:
        key = (obj, pos)
        if key not in self.pid:
            self.pid[key] = self.next_pid
            self.next_pid += 1
        return self.pid[key]

    def stored(self, e) -> None:
        obj = str(e["object_id"])
        for pos in range(int(e["blocks"])):
            self.emit(e, "allocation_victim_selected", request_id=f"prefill:{obj}",
                      physical_block_id=self.block(obj, pos), block_hash=None, ref_count=0,
                      free_queue_rank=pos, is_protected_resident=False,
                      victim_reason="free_uncached")
        for pos in range(int(e["blocks"])):
            self.emit(e, "resident_block_materialized", request_id=f"prefill:{obj}",
                      prefix_id=obj, claim_id=self.claim_of.get(obj),
                      logical_block_position=pos, physical_block_id=self.pid[(obj, pos)],
                      block_hash=f"{obj}:{pos}", ref_count=0, is_protected_resident=False)

    def claim(self, e) -> None:
        cid, obj = e["claim_id"], e.get("object_id")
        if obj is not None:
            self.claim_of[str(obj)] = cid
        p = e.get("predicate")
        fields = {"claim_id": cid, "prefix_id": None if obj is None else str(obj),
                  "protection_mode": MODE_OUT.get(e.get("protection_mode"),
                                                  e.get("protection_mode"))}
        if p:
            fields.update(materialization_predicate=_predicate_text(p),
                          predicate=p.get("kind"), resident_blocks_required=p.get("k"),
                          useful_threshold_blocks=p.get("k"))
        for k_in, k_out in (("footprint_blocks", "block_count_footprint"),
                            ("cache_identity", "cache_identity"),
                            ("leading_blocks_survived", "leading_blocks_survived"),
                            ("blocks_materialized", "resident_blocks_materialized")):
            if e.get(k_in) is not None:
                fields[k_out] = e[k_in]
        if e["type"] == "claim_harmed":
            fields["victim_reason"] = e.get("cause")
        if e["type"] == "claim_demoted":
            fields["arbiter_action"] = "demote_on_conflict"
        self.emit(e, CLAIM_OUT[e["type"]], **fields)

    def victim(self, e) -> None:
        obj = e.get("object_id")
        if obj is None:
            pid = self.next_pid
            self.next_pid += 1
            self.emit(e, "allocation_victim_selected", request_id=e.get("request_id"),
                      physical_block_id=pid, block_hash=f"cached:{pid}", ref_count=0,
                      is_protected_resident=False, victim_reason=e.get("reason"))
            return
        obj = str(obj)
        pid = self.pid.pop((obj, e["logical_position"]))
        self.emit(e, "allocation_victim_selected", request_id=e.get("request_id"),
                  claim_id=self.claim_of.get(obj), prefix_id=obj, physical_block_id=pid,
                  block_hash=f"{obj}:{e['logical_position']}", ref_count=0,
                  is_protected_resident=bool(e.get("protected")),
                  victim_reason=e.get("reason"))

    def conflict_outcome(self, c, e) -> None:
        event = "active_request_deferred" if e["type"] == "request_deferred" \
            else "active_request_refused"
        self.emit(e, event, request_id=e["request_id"],
                  blocking_claim_ids=c.get("blocking_claim_ids"),
                  protected_resident_blocks=c.get("protected_resident_blocks"),
                  active_live_blocks_required=c.get("active_live_blocks_required"),
                  resident_plus_active_blocks=c.get("resident_plus_active_blocks"),
                  capacity_shortfall_blocks=c.get("capacity_shortfall_blocks"),
                  free_blocks_before_allocate=c.get("free_blocks_before_allocate"),
                  feasibility=c.get("feasibility"),
                  arbiter_action="defer_active" if event.endswith("deferred")
                  else "refuse_active")

    def run(self) -> List[Dict[str, Any]]:
        pending = None        # a conflict event waits for the outcome that carries it
        for e in self.src:
            t = e["type"]
            if t == "conflict":
                pending = e
                continue
            if t in ("request_deferred", "request_refused") and pending is not None:
                self.conflict_outcome(pending, e)
            elif t == "request_deferred":
                # a request left waiting by a runtime that does not arbitrate: no conflict
                # record, no arbiter action
                self.emit(e, "active_request_deferred", request_id=e["request_id"])
            elif t == "object_stored":
                self.stored(e)
            elif t in CLAIM_OUT:
                self.claim(e)
            elif t == "victim":
                self.victim(e)
            elif t == "request_admitted":
                adm = e.get("admit_future_reuse")
                # what the arbiter said it needed (a no-admit conflict's figure) apart from
                # what the request holds
                said = (pending or {}).get("active_live_blocks_required", e.get("live_blocks"))
                self.emit(e, "active_request_admitted", request_id=e["request_id"],
                          active_live_blocks_required=said,
                          active_live_blocks_current=e.get("live_blocks"),
                          future_reuse_requested=True, future_reuse_admitted=adm,
                          arbiter_action=(pending or {}).get("arbiter_action", "serve"))
                self.emit(e, "future_reuse_admitted" if adm else "future_reuse_denied",
                          request_id=e["request_id"])
            elif t == "request_finished":
                self.emit(e, "active_request_finished", request_id=e["request_id"])
            else:
                raise ValueError(f"no artifact-v1 event for {t}")
            if t not in ("victim", "claim_harmed"):
                pending = None      # a no-admit conflict lasts until its admission
        return self.out


def to_artifact_v1(events: Iterable[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return _Exporter(list(events)).run()


def write_artifact_v1(events: Iterable[Dict[str, Any]], path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for ev in to_artifact_v1(events):
            f.write(json.dumps(ev, sort_keys=True, separators=(",", ":")) + "\n")
