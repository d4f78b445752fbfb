"""The resident-claim arbiter over vLLM's own BlockPool.

One arbiter, the spec's Policy as data (kvclaims.spec.policy): with a pinning policy
(``hard_refuse``, ``hard_demote``) it protects accepted claims; with ``native`` it only
keeps the claim ledger and lets vLLM evict as stock vLLM does (the baseline the spec's
native policy describes).

- **Pinning.** A protected object's resident blocks each carry one extra reference
  (``vllm_adapter.pin_blocks``, vLLM's own ``touch``): a referenced block is out of the free
  queue, so no allocation can evict it. Blocks are found through vLLM's hash map
  (``cached_block``), O(1) each; the free queue is never scanned. Unpinning (release,
  demotion, expiry) drops the references tail first, so the deepest block goes first
  once the blocks are ordinary cache again, and always *after* the event that ends the
  claim's protection (O4).
- **Victims.** An eviction hook on the pool (``install_eviction_hook``) tells the arbiter
  which block vLLM evicted; a block whose hash is a position of a registered object is a
  victim of that object. ``settle`` emits the victim events of an allocation and, for
  claims the policy does not pin (soft modes, or any claim under ``native``), harm when a
  materialized claim's predicate broke (if the policy emits harm).
- **Conflicts.** ``in_conflict(need)``: the request needs more blocks than vLLM can
  allocate without touching a pinned block (``get_num_free_blocks``, O(1));
  ``infeasible(need)``: protected resident + need > usable. ``defer`` / ``refuse`` emit the
  conflict event (CONTRACT.md section 7) naming exactly the claims whose protected blocks
  are resident (O8), then the request event.

Telemetry is the MicroRuntime's (kvclaims.model.telemetry): same schema, same event names.
Counters (accepted, rejected, materialized, harmed, demoted, expired, released, deferred,
refused) are kept in ``counters`` and exported as the Prometheus counter
``kvclaims_claim_events_total{event=...}`` in the process that runs the scheduler.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from kvclaims.model.claims import (MODE_NAMES, ClaimSpec, Decision, acceptance_decision,
                                   decide_claim, reserved_footprint, validate_claim)
from kvclaims.model.runtime import Victim
from kvclaims.model.telemetry import Telemetry
from kvclaims.spec.policy import Policy, policy_by_name
from kvclaims.spec.vocab import (ClaimStatus as CS, PROTECTED_MODES, RESPONSIBLE,
                                 RequestStatus as RS)

from . import vllm_adapter as va

COUNTER_EVENTS = ("accepted", "rejected", "materialized", "harmed", "demoted", "expired",
                  "released", "deferred", "refused", "bad_input")

_PROM = None


def _prometheus_counter():
    """The process-wide Prometheus counter (None without prometheus_client)."""
    global _PROM
    if _PROM is None:
        try:
            from prometheus_client import Counter
            _PROM = Counter("kvclaims_claim_events", "Resident KV claim arbiter events",
                            ["event", "policy"])
        except Exception:  # pragma: no cover - prometheus_client ships with vLLM
            _PROM = False
    return _PROM or None


@dataclass
class ObjectRec:
    object_id: str
    hashes: List[bytes]
    owner: Optional[str] = None
    salt: Optional[str] = None
    pinned: List[Any] = field(default_factory=list)   # pool blocks this arbiter holds
    stored: bool = False                              # object_stored announced, not all lost
    claims: List[str] = field(default_factory=list)

    @property
    def n_blocks(self) -> int:
        return len(self.hashes)


@dataclass
class ClaimRec:
    spec: ClaimSpec
    status: CS = CS.SUBMITTED
    accepted_at: int = 0


@dataclass
class RequestRec:
    request_id: str
    status: RS = RS.NONE
    live: int = 0
    admit: bool = True
    named: Tuple[str, ...] = ()


class ClaimArbiter:
    def __init__(self, block_pool: Any, *, policy: Any = "hard_refuse",
                 cap: Optional[int] = None, telemetry: Optional[Telemetry] = None,
                 block_size: int = 16):
        self.pool = block_pool
        self.policy: Policy = policy_by_name(policy) if isinstance(policy, str) else policy
        self.pins = self.policy.honours_claims and not self.policy.preference_only
        self.usable = va.usable_pool_blocks(block_pool)
        self.cap = self.usable if cap is None else int(cap)
        self.block_size = block_size
        self.telemetry = telemetry if telemetry is not None else Telemetry()
        self.clock = 0
        self.objects: Dict[str, ObjectRec] = {}
        self.claims: Dict[str, ClaimRec] = {}
        self.requests: Dict[str, RequestRec] = {}
        self._where: Dict[bytes, Tuple[ObjectRec, int]] = {}
        self._pending: List[str] = []          # accepted, not yet materialized
        self._victims: List[Victim] = []
        self.protected_resident = 0            # blocks pinned for protecting claims
        self.active_live = 0
        self.counters: Dict[str, int] = {k: 0 for k in COUNTER_EVENTS}
        self._prom = _prometheus_counter()
        va.install_eviction_hook(block_pool, self._on_evict)

    # --- telemetry --------------------------------------------------------------------------

    def _emit(self, type_: str, **fields):
        return self.telemetry.emit(type_, policy=self.policy.name, usable_blocks=self.usable,
                                   clock=self.clock, **fields)

    def _count(self, event: str) -> None:
        self.counters[event] += 1
        if self._prom is not None:
            self._prom.labels(event=event, policy=self.policy.name).inc()

    def resident_positions(self, obj: ObjectRec) -> List[bool]:
        return [va.cached_block(self.pool, h) is not None for h in obj.hashes]

    def interval(self, object_id: str) -> Tuple[int, int] | Tuple[str, Tuple[int, ...]]:
        """[lo, hi) of the object's resident positions; (0, 0) when none; when they are not
        an interval, ("non-interval", positions)."""
        ps = [p for p, r in enumerate(self.resident_positions(self.objects[object_id])) if r]
        if not ps:
            return (0, 0)
        if ps[-1] + 1 - ps[0] != len(ps):
            return ("non-interval", tuple(ps))
        return (ps[0], ps[-1] + 1)

    def _pred_holds(self, c: ClaimRec) -> bool:
        obj = self.objects.get(c.spec.object_id)
        if obj is None:
            return False
        p = c.spec.predicate
        return all(va.cached_block(self.pool, h) is not None for h in obj.hashes[p.start:p.end])

    def _claim_fields(self, c: ClaimRec) -> dict:
        obj = self.objects.get(c.spec.object_id)
        res = self.resident_positions(obj) if obj else []
        lead = 0
        while lead < len(res) and res[lead]:
            lead += 1
        return {"claim_id": c.spec.claim_id, "object_id": c.spec.object_id,
                "owner_scope": c.spec.owner_scope, "predicate": c.spec.predicate.to_json(),
                "blocks_required": c.spec.predicate.k, "blocks_materialized": sum(res),
                "leading_blocks_survived": lead,
                "protection_mode": MODE_NAMES[c.spec.protection_mode]}

    def _claim_event(self, type_: str, c: ClaimRec, **extra):
        return self._emit(type_, **self._claim_fields(c), **extra)

    # --- objects ------------------------------------------------------------------------------

    def register_object(self, object_id: str, hashes: Sequence[bytes],
                        owner: Optional[str] = None, salt: Optional[str] = None) -> ObjectRec:
        obj = self.objects.get(object_id)
        if obj is not None:
            return obj
        obj = ObjectRec(object_id, [bytes(h) for h in hashes], owner, salt)
        self.objects[object_id] = obj
        for p, h in enumerate(obj.hashes):
            self._where[h] = (obj, p)
        return obj

    def note_stored(self, obj: ObjectRec) -> None:
        """Announce that the object's blocks are in the pool (once until it is all lost),
        so an observer holding only the trace knows what is resident."""
        if not obj.stored:
            obj.stored = True
            self._emit("object_stored", object_id=obj.object_id,
                       blocks=sum(self.resident_positions(obj)) or obj.n_blocks)

    # --- protection ---------------------------------------------------------------------------

    def _overdue(self, c: ClaimRec) -> bool:
        from kvclaims.spec.vocab import Mode
        return (c.spec.protection_mode == Mode.EXPIRING and c.spec.duration is not None
                and self.clock >= c.accepted_at + c.spec.duration)

    def recorded_protected(self, c: ClaimRec) -> bool:
        return c.status in RESPONSIBLE and c.spec.protection_mode in PROTECTED_MODES

    def protected_now(self, c: ClaimRec) -> bool:
        return self.recorded_protected(c) and not self._overdue(c)

    def _wants_pin(self, obj: ObjectRec) -> bool:
        return self.pins and any(self.protected_now(self.claims[cid]) for cid in obj.claims)

    def refresh(self, obj: ObjectRec) -> None:
        """Hold references on exactly the resident blocks of an object its claims protect."""
        if self._wants_pin(obj):
            if len(obj.pinned) == obj.n_blocks and all(b is not None for b in obj.pinned):
                return
            if not obj.pinned:
                obj.pinned = [None] * obj.n_blocks
            new = []
            for p, h in enumerate(obj.hashes):
                if obj.pinned[p] is None:
                    b = va.cached_block(self.pool, h)
                    if b is not None:
                        obj.pinned[p] = b
                        new.append(b)
            if new:
                va.pin_blocks(self.pool, new)
                self.protected_resident += len(new)
        elif obj.pinned:
            held = [b for b in reversed(obj.pinned) if b is not None]   # tail first
            obj.pinned = []
            self.protected_resident -= len(held)
            va.unpin_blocks(self.pool, held)

    def _on_evict(self, block: Any, block_hash: bytes) -> None:
        hit = self._where.get(block_hash)
        if hit is None:
            return
        obj, p = hit
        if va.cached_block(self.pool, block_hash) is not None:
            return          # a duplicate copy went; the position is still resident
        prot = any(self.recorded_protected(self.claims[cid]) for cid in obj.claims)
        self._victims.append(Victim(block.block_id, obj.object_id, p, prot, "lru"))

    def settle(self, cause: str, request_id: Optional[str] = None) -> List[Victim]:
        """After an allocation: victim events, then harm for claims whose predicate broke."""
        victims, self._victims = self._victims, []
        if not victims:
            return victims
        hit_objs: Dict[str, ObjectRec] = {}
        for v in victims:
            obj = self.objects[v.object_id]
            hit_objs[v.object_id] = obj
            cs = [cid for cid in obj.claims if self.claims[cid].status in RESPONSIBLE]
            self._emit("victim", block_id=v.block_id, object_id=v.object_id,
                       logical_position=v.position, protected=v.protected, reason=v.reason,
                       claim_id=cs[0] if cs else None, request_id=request_id, cause=cause)
        for obj in hit_objs.values():
            if obj.stored and not any(self.resident_positions(obj)):
                obj.stored = False
            for cid in obj.claims:
                c = self.claims[cid]
                if (self.policy.emits_harm and c.status == CS.MATERIALIZED
                        and not self._pred_holds(c)):
                    c.status = CS.HARMED
                    self._count("harmed")
                    self._claim_event("claim_harmed", c, cause=cause, request_id=request_id,
                                      predicate_before=True, predicate_after=False)
        return victims

    # --- claims -------------------------------------------------------------------------------

    def submit(self, spec: ClaimSpec, decide: bool = True) -> Decision:
        """Validate (ClaimError, nothing recorded), record, and by default decide at once."""
        obj = self.objects.get(spec.object_id)
        spec = validate_claim(spec, obj.n_blocks if obj else None)
        if spec.claim_id in self.claims:
            self._emit("claim_rejected", claim_id=spec.claim_id, object_id=spec.object_id,
                       reason="duplicate claim_id", duplicate=True)
            return Decision(spec.claim_id, False, "duplicate claim_id")
        c = ClaimRec(spec)
        self.claims[spec.claim_id] = c
        if obj is not None:
            obj.claims.append(spec.claim_id)
        self._claim_event("claim_submitted", c, footprint_blocks=spec.footprint_blocks,
                          duration=spec.duration, cache_identity=spec.cache_identity.to_json())
        if not decide:
            return Decision(spec.claim_id, False, "pending")
        return self.decide(spec.claim_id)

    def reserved_footprint(self) -> int:
        return reserved_footprint(self.claims.values())

    def acceptance(self, claim_id: str) -> Tuple[bool, str]:
        return acceptance_decision(self.claims[claim_id].spec, self.reserved_footprint(),
                                   self.cap)

    def decide(self, claim_id: str) -> Decision:
        return decide_claim(self, claim_id)

    def accept(self, claim_id: str) -> bool:
        c = self.claims.get(claim_id)
        if c is None or c.status != CS.SUBMITTED or not self.acceptance(claim_id)[0]:
            return False
        c.status, c.accepted_at = CS.ACCEPTED, self.clock
        self._count("accepted")
        self._claim_event("claim_accepted", c, cap_blocks=self.cap,
                          reserved_blocks=self.reserved_footprint())
        self._pending.append(claim_id)
        obj = self.objects.get(c.spec.object_id)
        if obj is not None:
            self.refresh(obj)
        self.check_materialized()
        return True

    def reject(self, claim_id: str, reason: str = "operator") -> bool:
        c = self.claims.get(claim_id)
        if c is None or c.status != CS.SUBMITTED:
            return False
        c.status = CS.REJECTED
        self._count("rejected")
        self._claim_event("claim_rejected", c, reason=reason)
        return True

    def check_materialized(self) -> List[str]:
        """Claims accepted and not yet materialized whose predicate now holds (O(k) each,
        only for those pending claims): materialized, and their objects pinned."""
        done = []
        for cid in list(self._pending):
            c = self.claims[cid]
            if c.status != CS.ACCEPTED:
                self._pending.remove(cid)
                continue
            obj = self.objects.get(c.spec.object_id)
            if obj is not None:
                self.refresh(obj)
            if self._pred_holds(c):
                self.note_stored(obj)
                c.status = CS.MATERIALIZED
                self._pending.remove(cid)
                self._count("materialized")
                self._claim_event("claim_materialized", c)
                done.append(cid)
        return done

    def _end(self, c: ClaimRec, status: CS, type_: str, counter: str, **extra) -> None:
        """The event first, then the blocks become ordinary cache (O4)."""
        c.status = status
        self._count(counter)
        self._claim_event(type_, c, **extra)
        obj = self.objects.get(c.spec.object_id)
        if obj is not None:
            self.refresh(obj)

    def release(self, claim_id: str, actor: str) -> bool:
        c = self.claims.get(claim_id)
        if c is None or c.status not in RESPONSIBLE:
            return False
        if self.policy.owner_check and actor != c.spec.owner_scope:
            self._emit("release_denied", claim_id=claim_id, object_id=c.spec.object_id,
                       actor=actor, reason="only the owner may release a claim")
            return True
        self._end(c, CS.RELEASED, "claim_released", "released", actor=actor)
        return True

    def demote(self, claim_id: str, request_id: str, need: int) -> bool:
        c = self.claims.get(claim_id)
        r = self.requests.get(request_id, RequestRec(request_id))
        obj = self.objects.get(c.spec.object_id) if c else None
        if not (c is not None and self.policy.demote_on_conflict and self.protected_now(c)
                and obj is not None and any(self.resident_positions(obj))
                and r.status in (RS.NONE, RS.DEFERRED) and self.in_conflict(need)):
            return False
        self._end(c, CS.DEMOTED, "claim_demoted", "demoted", request_id=request_id)
        return True

    def tick(self) -> List[str]:
        """Advance the logical clock; overdue expiring claims expire, event first."""
        self.clock += 1
        out = []
        if self.policy.expiry_check:
            for cid, c in self.claims.items():
                if c.status in RESPONSIBLE and self._overdue(c):
                    self._end(c, CS.EXPIRED, "claim_expired", "expired")
                    out.append(cid)
        return out

    # --- conflicts ----------------------------------------------------------------------------

    def free_blocks(self) -> int:
        return va.num_free_blocks(self.pool)

    def in_conflict(self, need: int) -> bool:
        return need > self.free_blocks()

    def infeasible(self, need: int) -> bool:
        return self.protected_resident + need > self.usable

    def blocking_claims(self) -> Tuple[str, ...]:
        """O8: every claim whose protected blocks are resident now, and no other."""
        out = []
        for cid, c in self.claims.items():
            if not self.protected_now(c):
                continue
            obj = self.objects.get(c.spec.object_id)
            if obj is not None and any(b is not None for b in obj.pinned):
                out.append(cid)
        return tuple(out)

    def request(self, request_id: str) -> RequestRec:
        r = self.requests.get(request_id)
        if r is None:
            r = self.requests[request_id] = RequestRec(request_id)
        return r

    def _conflict(self, request_id: str, need: int, action: str) -> Tuple[str, ...]:
        named = self.blocking_claims()
        prot = self.protected_resident
        total = prot + self.active_live + need
        self._emit("conflict", request_id=request_id, blocking_claim_ids=list(named),
                   protected_resident_blocks=prot, active_live_blocks_required=need,
                   resident_plus_active_blocks=total, capacity_shortfall_blocks=total - self.usable,
                   free_blocks_before_allocate=self.free_blocks(),
                   feasibility="infeasible" if self.infeasible(need) else "wait",
                   arbiter_action=action)
        return named

    def defer(self, request_id: str, need: int) -> bool:
        r = self.request(request_id)
        if r.status != RS.NONE or not self.in_conflict(need):
            return False
        return self._hold_back(r, need, "defer", RS.DEFERRED, "deferred")

    def refuse(self, request_id: str, need: int) -> bool:
        r = self.request(request_id)
        if not (r.status == RS.DEFERRED and self.in_conflict(need) and self.infeasible(need)):
            return False
        return self._hold_back(r, need, "refuse", RS.REFUSED, "refused")

    def _hold_back(self, r: RequestRec, need: int, action: str, status: RS, what: str) -> bool:
        """The conflict event naming the blocking claims, then the request event."""
        r.named = self._conflict(r.request_id, need, action)
        r.status = status
        self._count(what)
        self._emit(f"request_{what}", request_id=r.request_id, blocking_claim_ids=list(r.named))
        return True

    # --- requests -----------------------------------------------------------------------------

    def admitted(self, request_id: str, live_blocks: int, admit: bool = True,
                 hit_blocks: int = 0) -> None:
        """A request vLLM allocated: victim events and harm first, then the admission."""
        self.settle(f"admit:{request_id}", request_id)
        r = self.request(request_id)
        r.status, r.live, r.admit = RS.RUNNING, live_blocks, admit
        self.active_live += live_blocks
        self._emit("request_admitted", request_id=request_id, live_blocks=live_blocks,
                   cached_blocks_hit=hit_blocks, admit_future_reuse=admit)

    def finished(self, request_id: str) -> None:
        r = self.requests.get(request_id)
        if r is None or r.status != RS.RUNNING:
            return
        self.active_live -= r.live
        r.status, r.live = RS.FINISHED, 0
        self._emit("request_finished", request_id=request_id)
