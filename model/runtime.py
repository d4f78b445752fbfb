"""The MicroRuntime: a block-level runtime that implements the resident claim contract.

It keeps its pool as vLLM does (model/pool.py) and adds claims on top:

- objects are prefixes of full blocks whose hashes chain through every earlier token and the
  cache identity (another salt or model id never hits);
- claims are submitted, decided (acceptance control against a cap on protected footprint),
  materialized when their predicate over logical positions first holds, released by their
  owner only, demoted, expired by their duration on `tick`;
- protection is a reference held on each resident block (`pin`): protected blocks are out of
  the free queue, so keeping them costs O(1) per block and an allocation never meets them;
- the arbiter is the spec's Policy (kvclaims.spec.policy): the same switches choose how an
  allocation may reach beyond the free queue, what a conflict names, whether harm is emitted.

Every state change is announced through Telemetry with the spec's event type names; the
abstraction onto the spec's state lives in kvclaims.refinement.model_target.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from kvclaims.spec.policy import Naming, Policy, policy_by_name
from kvclaims.spec.vocab import (ClaimStatus as CS, Feasibility, Lowering, Mode,
                                 PROTECTED_MODES, RESPONSIBLE, RequestStatus as RS,
                                 lowering_verdict)

from .attention import Attention, chunks, live_blocks_required
from .claims import (CacheIdentity, ClaimError, ClaimSpec, Decision, MODE_NAMES,  # noqa: F401
                     acceptance_decision, decide_claim, parse_mode, reserved_footprint,
                     validate_claim)
from .pool import BlockPool
from .telemetry import Telemetry

PIN = -1                      # placement: held by a reference, out of the free queue
SOFT_MODES = (Mode.SOFT_PRIORITY, Mode.BEST_EFFORT)
FEASIBILITY_NAMES = {Feasibility.WAIT: "wait", Feasibility.INFEASIBLE: "infeasible"}


class RuntimeUsageError(ValueError):
    """An operation named something the runtime does not know, or was malformed."""


def block_hashes(tokens: Sequence[int], identity: CacheIdentity, block_size: int) -> List[int]:
    """Hash of each full block, chained: block p's hash depends on all tokens before it and
    on the cache identity."""
    out, parent = [], hash(("kvclaims", identity.key()))
    for p in range(len(tokens) // block_size):
        parent = hash((parent, tuple(tokens[p * block_size:(p + 1) * block_size])))
        out.append(parent)
    return out


def synthetic_tokens(name: str, n_blocks: int, block_size: int = 16) -> List[int]:
    """n_blocks full blocks of token ids fixed by `name` (no model runs: tokens are ints)."""
    base = int.from_bytes(hashlib.sha256(name.encode()).digest()[:6], "big") * 1_000_000
    return [base + t for t in range(n_blocks * block_size)]


@dataclass
class ObjectRecord:
    object_id: str
    identity: CacheIdentity
    hashes: List[int]
    order: int
    tokens: Sequence[int] = ()
    present: bytearray = field(default_factory=bytearray)
    n_present: int = 0
    pinned: bool = False
    claims: List[str] = field(default_factory=list)

    @property
    def n_blocks(self) -> int:
        return len(self.hashes)

    def positions(self) -> List[int]:
        return [p for p, x in enumerate(self.present) if x]

    def interval(self) -> Optional[Tuple[int, int]]:
        """[lo, hi) of the resident positions, (0, 0) when none, None when not an interval."""
        ps = self.positions()
        if not ps:
            return (0, 0)
        lo, hi = ps[0], ps[-1] + 1
        return (lo, hi) if hi - lo == len(ps) else None

    def leading(self) -> int:
        n = 0
        while n < len(self.present) and self.present[n]:
            n += 1
        return n


@dataclass
class ClaimRecord:
    spec: ClaimSpec
    order: int
    status: CS = CS.SUBMITTED
    accepted_at: int = 0
    pred_present: int = 0          # resident positions inside the predicate's range
    reason: str = ""


@dataclass
class RequestRecord:
    request_id: str
    identity: CacheIdentity
    hashes: List[int]
    live_required: int
    admit_future_reuse: bool = True
    attention: Attention = Attention.FULL
    chunk_blocks: Optional[int] = None
    window_blocks: Optional[int] = None
    status: RS = RS.NONE
    blocks: List[int] = field(default_factory=list)
    peak_live: int = 0
    named: Tuple[str, ...] = ()


@dataclass(frozen=True)
class Victim:
    block_id: int
    object_id: Optional[str]
    position: Optional[int]
    protected: bool
    reason: str


@dataclass(frozen=True)
class Admission:
    taken: bool
    admit_future_reuse: bool = True
    victims: Tuple[Victim, ...] = ()
    note: str = ""


class MicroRuntime:
    def __init__(self, num_blocks: int, policy="hard_refuse",
                 protected_cap_blocks: Optional[int] = None, block_size: int = 16,
                 telemetry: Optional[Telemetry] = None):
        self.policy: Policy = policy_by_name(policy) if isinstance(policy, str) else policy
        self.pool = BlockPool(num_blocks)
        self.block_size = block_size
        self.cap = self.pool.usable if protected_cap_blocks is None else protected_cap_blocks
        if not 0 <= self.cap <= self.pool.usable:
            raise RuntimeUsageError("protected cap must be between 0 and the usable pool")
        self.telemetry = telemetry if telemetry is not None else Telemetry()
        self.clock = 0
        self.objects: Dict[str, ObjectRecord] = {}
        self.claims: Dict[str, ClaimRecord] = {}
        self.requests: Dict[str, RequestRecord] = {}
        self._where: Dict[int, Tuple[ObjectRecord, int]] = {}   # object block hash -> position
        self._running_live = 0

    # --- telemetry ------------------------------------------------------------------------------

    @property
    def usable(self) -> int:
        return self.pool.usable

    def _emit(self, type_: str, **fields):
        return self.telemetry.emit(type_, policy=self.policy.name, usable_blocks=self.usable,
                                   clock=self.clock, **fields)

    def _claim_fields(self, c: ClaimRecord) -> dict:
        obj = self.objects.get(c.spec.object_id)
        return {"claim_id": c.spec.claim_id, "object_id": c.spec.object_id,
                "owner_scope": c.spec.owner_scope,
                "predicate": c.spec.predicate.to_json(),
                "blocks_required": c.spec.predicate.k,
                "blocks_materialized": obj.n_present if obj else 0,
                "leading_blocks_survived": obj.leading() if obj else 0,
                "protection_mode": MODE_NAMES[c.spec.protection_mode]}

    def _claim_event(self, type_: str, c: ClaimRecord, **extra):
        return self._emit(type_, **self._claim_fields(c), **extra)

    # --- objects --------------------------------------------------------------------------------

    def register_object(self, object_id: str, tokens: Sequence[int],
                        identity: CacheIdentity = CacheIdentity()) -> ObjectRecord:
        """Make a prefix known by its tokens (full blocks only); nothing is stored yet."""
        if not object_id:
            raise RuntimeUsageError("object_id must be non-empty")
        if object_id in self.objects:
            raise RuntimeUsageError(f"object {object_id} already registered")
        hs = block_hashes(tokens, identity, self.block_size)
        if not hs:
            raise RuntimeUsageError(f"object {object_id} has no full block")
        obj = ObjectRecord(object_id, identity, hs, len(self.objects), tokens,
                           bytearray(len(hs)))
        for p, h in enumerate(hs):
            self._where[h] = (obj, p)
        self.objects[object_id] = obj
        for c in self.claims.values():      # a claim submitted before its object
            if c.spec.object_id == object_id:
                obj.claims.append(c.spec.claim_id)
        return obj

    def _object(self, object_id: str) -> ObjectRecord:
        if object_id not in self.objects:
            raise RuntimeUsageError(f"unknown object {object_id}")
        return self.objects[object_id]

    def materialize(self, object_id: str) -> bool:
        """Prefill an object none of whose blocks is resident into free, unhashed blocks.
        A claim's object never evicts anything to be stored: without room it is not stored."""
        obj = self._object(object_id)
        if obj.n_present or self.pool.unhashed_free < obj.n_blocks:
            return False
        want = self._placement(obj)
        obj.pinned = want == PIN          # nothing resident: the flag is all there is to set
        blocks = [self.pool.pop(0) for _ in range(obj.n_blocks)]
        self._emit("object_stored", object_id=object_id, blocks=obj.n_blocks)
        for p, b in enumerate(blocks):
            self._store(b, obj.hashes[p])  # a pinned object's new block takes its pin here
        self.pool.release_all(blocks[::-1], [max(want, 0)] * len(blocks))  # tail first
        self._check_materialized(obj)
        return True

    def _store(self, b: int, h: int) -> None:
        """Block b now holds the KV whose hash is h (a duplicate of a cached hash stays
        unhashed, as one block per hash is what the cache can find)."""
        if h in self.pool.cache:
            return
        self.pool.set_hash(b, h)
        hit = self._where.get(h)
        if hit is None:
            return
        obj, p = hit
        obj.present[p] = 1
        obj.n_present += 1
        for cid in obj.claims:
            c = self.claims[cid]
            if c.spec.predicate.start <= p < c.spec.predicate.end:
                c.pred_present += 1
        if obj.pinned:
            self.pool.touch(b)

    def _lost(self, obj: ObjectRecord, p: int) -> None:
        obj.present[p] = 0
        obj.n_present -= 1
        for cid in obj.claims:
            c = self.claims[cid]
            if c.spec.predicate.start <= p < c.spec.predicate.end:
                c.pred_present -= 1

    def _check_materialized(self, obj: ObjectRecord) -> None:
        for cid in obj.claims:
            c = self.claims[cid]
            if c.status == CS.ACCEPTED and c.pred_present == c.spec.predicate.k:
                c.status = CS.MATERIALIZED
                self._claim_event("claim_materialized", c)

    # --- protection -----------------------------------------------------------------------------

    def _overdue(self, c: ClaimRecord, clock: Optional[int] = None) -> bool:
        clock = self.clock if clock is None else clock
        return (c.spec.protection_mode == Mode.EXPIRING and c.spec.duration is not None
                and clock >= c.accepted_at + c.spec.duration)

    def _recorded_protected(self, c: ClaimRecord) -> bool:
        return c.status in RESPONSIBLE and c.spec.protection_mode in PROTECTED_MODES

    def protected_now(self, c: ClaimRecord) -> bool:
        """Its blocks may not be ordinary victims: responsible, protecting mode, in time."""
        return self._recorded_protected(c) and not self._overdue(c)

    def _obj_claims(self, obj: ObjectRecord) -> List[ClaimRecord]:
        return [self.claims[cid] for cid in obj.claims]

    def _protecting(self, obj: ObjectRecord) -> bool:
        return any(self.protected_now(c) for c in self._obj_claims(obj))

    def _placement(self, obj: ObjectRecord) -> int:
        """Where the object's free blocks belong: PIN, or a free-queue tier."""
        pol = self.policy
        if not pol.honours_claims and not pol.preference_only:
            return 0
        cs = self._obj_claims(obj)
        if any(self.protected_now(c) for c in cs):
            return 2 if pol.preference_only else PIN
        if any(c.status in RESPONSIBLE and c.spec.protection_mode in SOFT_MODES for c in cs):
            return 1
        return 0

    def _block_of(self, obj: ObjectRecord, p: int) -> int:
        return self.pool.cache[obj.hashes[p]]

    def _replace(self, obj: ObjectRecord) -> None:
        """Put the object's resident blocks where its claims now say, tail first (so the
        deepest block is the first to go once they are evictable)."""
        want = self._placement(obj)
        pool = self.pool
        for p in reversed(obj.positions()):
            b = self._block_of(obj, p)
            if want == PIN:
                if not obj.pinned:
                    pool.touch(b)
            elif obj.pinned:
                pool.release(b, want)
            elif pool.tier[b] >= 0 and pool.tier[b] != want:
                pool.move(b, want)
        obj.pinned = want == PIN

    # --- claims ---------------------------------------------------------------------------------

    def submit_claim(self, spec: ClaimSpec, decide: bool = True) -> Decision:
        """Validate (ClaimError on a malformed claim: nothing is recorded), record, and by
        default decide at once."""
        obj = self.objects.get(spec.object_id) if isinstance(spec, ClaimSpec) else None
        if not isinstance(spec, ClaimSpec):
            raise ClaimError("a claim must be a ClaimSpec")
        spec = validate_claim(spec, obj.n_blocks if obj else None)
        if spec.claim_id in self.claims:
            self._emit("claim_rejected", claim_id=spec.claim_id, object_id=spec.object_id,
                       reason="duplicate claim_id", duplicate=True)
            return Decision(spec.claim_id, False, "duplicate claim_id")
        c = ClaimRecord(spec, len(self.claims))
        self.claims[spec.claim_id] = c
        if obj is not None:
            obj.claims.append(spec.claim_id)
            p = spec.predicate
            c.pred_present = sum(obj.present[p.start:p.end])
        self._claim_event("claim_submitted", c, footprint_blocks=spec.footprint_blocks,
                          duration=spec.duration,
                          cache_identity=spec.cache_identity.to_json())
        if not decide:
            return Decision(spec.claim_id, False, "pending")
        return self.decide(spec.claim_id)

    def _claim(self, claim_id: str) -> ClaimRecord:
        if claim_id not in self.claims:
            raise RuntimeUsageError(f"unknown claim {claim_id}")
        return self.claims[claim_id]

    def reserved_footprint(self) -> int:
        return reserved_footprint(self.claims.values())

    def acceptance(self, claim_id: str) -> Tuple[bool, str]:
        """Acceptance control (model.claims.acceptance_decision), plus: a claim's cache
        identity must be its object's."""
        s = self._claim(claim_id).spec
        obj = self.objects.get(s.object_id)
        if obj is not None and obj.identity != s.cache_identity:
            return False, "cache identity differs from the object's"
        return acceptance_decision(s, self.reserved_footprint(), self.cap)

    def decide(self, claim_id: str) -> Decision:
        c = self._claim(claim_id)
        if c.status != CS.SUBMITTED:
            raise RuntimeUsageError(f"claim {claim_id} is not pending")
        return decide_claim(self, claim_id)

    def accept(self, claim_id: str) -> bool:
        c = self._claim(claim_id)
        if c.status != CS.SUBMITTED or not self.acceptance(claim_id)[0]:
            return False
        c.status, c.accepted_at = CS.ACCEPTED, self.clock
        self._claim_event("claim_accepted", c, cap_blocks=self.cap,
                          reserved_blocks=self.reserved_footprint())
        obj = self.objects.get(c.spec.object_id)
        if obj is not None:
            self._check_materialized(obj)
            self._replace(obj)
        return True

    def reject(self, claim_id: str, reason: str = "operator") -> bool:
        """Reject a pending claim (the runtime's decision, or an operator's)."""
        c = self._claim(claim_id)
        if c.status != CS.SUBMITTED:
            return False
        c.status, c.reason = CS.REJECTED, reason
        self._claim_event("claim_rejected", c, reason=reason)
        return True

    def _end(self, c: ClaimRecord, status: CS, type_: str, **extra) -> None:
        c.status = status
        self._claim_event(type_, c, **extra)
        obj = self.objects.get(c.spec.object_id)
        if obj is not None:
            self._replace(obj)

    def release_claim(self, claim_id: str, actor: str) -> bool:
        """Release by the owner; anyone else's release is refused and reported (O10)."""
        c = self._claim(claim_id)
        if c.status not in RESPONSIBLE:
            return False
        if self.policy.owner_check and actor != c.spec.owner_scope:
            self._emit("release_denied", claim_id=claim_id, object_id=c.spec.object_id,
                       actor=actor, reason="only the owner may release a claim")
            return True
        self._end(c, CS.RELEASED, "claim_released", actor=actor)
        return True

    def demote_claim(self, claim_id: str, request_id: str) -> bool:
        """Relax a claim that stands in a pending request's way (hard_demote), event first:
        its blocks become ordinary cache only after claim_demoted is out."""
        c = self._claim(claim_id)
        r = self._request(request_id)
        obj = self.objects.get(c.spec.object_id)
        if not (self.policy.demote_on_conflict and self.protected_now(c) and obj is not None
                and obj.n_present > 0 and r.status in (RS.NONE, RS.DEFERRED)
                and self.in_conflict(request_id)):
            return False
        self._end(c, CS.DEMOTED, "claim_demoted", request_id=request_id)
        return True

    def tick(self) -> List[str]:
        """Advance the logical clock; expire overdue claims in the same step (with an event),
        unless the policy skips the check.  Returns the claims expired."""
        self.clock += 1
        out = []
        if self.policy.expiry_check:
            for c in self._claims_in_order():
                if c.status in RESPONSIBLE and self._overdue(c):
                    self._end(c, CS.EXPIRED, "claim_expired")
                    out.append(c.spec.claim_id)
        return out

    def _claims_in_order(self) -> List[ClaimRecord]:
        return sorted(self.claims.values(), key=lambda c: c.order)

    # --- requests -------------------------------------------------------------------------------

    def new_request(self, request_id: str, tokens: Sequence[int],
                    identity: CacheIdentity = CacheIdentity(), admit_future_reuse: bool = True,
                    attention: Attention = Attention.FULL, chunk_blocks: Optional[int] = None,
                    window_blocks: Optional[int] = None) -> RequestRecord:
        if not request_id or request_id in self.requests:
            raise RuntimeUsageError(f"request id {request_id!r} is empty or already used")
        hs = block_hashes(tokens, identity, self.block_size)
        if not hs:
            raise RuntimeUsageError(f"request {request_id} has no full block")
        live = live_blocks_required(len(hs), attention, chunk_blocks, window_blocks)
        r = RequestRecord(request_id, identity, hs, live, admit_future_reuse, attention,
                          chunk_blocks, window_blocks)
        self.requests[request_id] = r
        return r

    def _request(self, request_id: str) -> RequestRecord:
        if request_id not in self.requests:
            raise RuntimeUsageError(f"unknown request {request_id}")
        return self.requests[request_id]

    def lookup(self, hashes: Sequence[int]) -> int:
        """Leading blocks of a prompt found in the prefix cache."""
        n = 0
        while n < len(hashes) and hashes[n] in self.pool.cache:
            n += 1
        return n

    def reuse(self, request_id: str, object_id: str) -> int:
        """A pending request looks an object up under its own identity: the number of
        leading blocks it hits (0: no reuse, no event).  Lookup only, nothing is held."""
        r = self._request(request_id)
        obj = self._object(object_id)
        if r.status != RS.NONE:
            return 0
        hs = (obj.hashes if r.identity == obj.identity
              else block_hashes(obj.tokens, r.identity, self.block_size))
        n = self.lookup(hs)
        if n:
            self._emit("prefix_hit", request_id=request_id, object_id=object_id, blocks=n)
        return n

    def _hits(self, r: RequestRecord) -> int:
        return self.lookup(r.hashes) if r.attention == Attention.FULL else 0

    def new_blocks_needed(self, request_id: str) -> int:
        r = self._request(request_id)
        return r.live_required - self._hits(r)

    def unprotected_supply(self) -> int:
        """Blocks an allocation can get without touching a protected block: the free queue's
        unprotected tiers, and pinned blocks of claims that are no longer protected (overdue
        expiring claims a runtime without an expiry check still holds)."""
        p = self.pool
        return p.free_count[0] + p.free_count[1] + sum(
            obj.n_present for obj in self._overdue_pinned())

    def _overdue_pinned(self) -> List[ObjectRecord]:
        if self.policy.expiry_check:
            return []        # tick expires overdue claims at once: none is still pinned
        return [o for o in self._objects_in_order() if o.pinned and not self._protecting(o)]

    def _objects_in_order(self) -> List[ObjectRecord]:
        return sorted(self.objects.values(), key=lambda o: o.order)

    def in_conflict(self, request_id: str) -> bool:
        return self.new_blocks_needed(request_id) > self.unprotected_supply()

    def protected_resident(self) -> int:
        return sum(o.n_present for o in self.objects.values() if self._protecting(o))

    def active_live(self) -> int:
        return self._running_live

    def blocking_claims(self) -> Tuple[str, ...]:
        """O8: exactly the claims whose protected blocks are resident in the pool."""
        out = []
        for c in self._claims_in_order():
            obj = self.objects.get(c.spec.object_id)
            if self.protected_now(c) and obj is not None and obj.n_present > 0:
                out.append(c.spec.claim_id)
        return tuple(out)

    def _named(self) -> Tuple[str, ...]:
        if self.policy.naming == Naming.EXACT:
            return self.blocking_claims()
        if self.policy.naming == Naming.SUBSET:      # forgets the latest blocking claim
            return self.blocking_claims()[:-1]
        # misattribution: every claim on record, whether or not it holds a protected block
        return tuple(c.spec.claim_id for c in self._claims_in_order() if c.status in RESPONSIBLE)

    def lowering(self, mode) -> Lowering:
        """O7 capability honesty: what this runtime's primitive is worth for a mode."""
        return lowering_verdict(self.policy.primitive, parse_mode(mode))

    def feasibility(self, request_id: str) -> Feasibility:
        need = self._request(request_id).live_required
        return (Feasibility.INFEASIBLE if self.protected_resident() + need > self.usable
                else Feasibility.WAIT)

    def _conflict(self, request_id: str, action: str, named: Tuple[str, ...],
                  need: Optional[int] = None) -> None:
        r = self._request(request_id)
        need = r.live_required if need is None else need
        prot = self.protected_resident()
        total = prot + self.active_live() + r.live_required
        self._emit("conflict", request_id=request_id, blocking_claim_ids=list(named),
                   protected_resident_blocks=prot, active_live_blocks_required=need,
                   resident_plus_active_blocks=total,
                   capacity_shortfall_blocks=total - self.usable,
                   free_blocks_before_allocate=self.pool.unhashed_free,
                   feasibility=FEASIBILITY_NAMES[self.feasibility(request_id)],
                   arbiter_action=action)

    def defer(self, request_id: str) -> bool:
        r = self._request(request_id)
        if r.status != RS.NONE or not self.in_conflict(request_id):
            return False
        return self._hold_back(r, "defer", RS.DEFERRED, "request_deferred")

    def refuse(self, request_id: str) -> bool:
        """Refuse a deferred request that cannot fit while the claims stand."""
        r = self._request(request_id)
        if not (r.status == RS.DEFERRED and self.in_conflict(request_id)
                and self.feasibility(request_id) == Feasibility.INFEASIBLE):
            return False
        return self._hold_back(r, "refuse", RS.REFUSED, "request_refused")

    def _hold_back(self, r: RequestRecord, action: str, status: RS, type_: str) -> bool:
        """The conflict event naming the blocking claims, then the deferral or refusal."""
        r.named = self._named()
        self._conflict(r.request_id, action, r.named)
        r.status = status
        self._emit(type_, request_id=r.request_id, blocking_claim_ids=list(r.named))
        return True

    def serves_through_conflict(self) -> bool:
        """Policies that answer a conflict by serving anyway (with whatever they let
        themselves take) rather than by deferring: the non-conformant lowerings."""
        pol = self.policy
        return (not pol.honours_claims or pol.preference_only or pol.count_protection
                or pol.late_announce or pol.conflict_noadmit)

    def arbitrate(self, request_id: str) -> str:
        """One decision of the arbiter for a pending request: admit if it fits; otherwise
        defer first; a deferred request that cannot fit while the claims stand gets its
        blocking claims demoted, events first (hard_demote), or is refused (hard_refuse).
        Returns what happened: admitted, deferred, demoted, refused or waiting."""
        r = self._request(request_id)
        if r.status not in (RS.NONE, RS.DEFERRED):
            raise RuntimeUsageError(f"request {request_id} is not pending")
        if ((not self.in_conflict(request_id) or self.serves_through_conflict())
                and self.admit(request_id).taken):
            return "admitted"
        if r.status == RS.NONE and self.defer(request_id):
            return "deferred"
        if self.policy.demote_on_conflict:
            done = [cid for cid in self.blocking_claims()
                    if self.in_conflict(request_id) and self.demote_claim(cid, request_id)]
            if done:
                return "demoted"
        if self.refuse(request_id):
            return "refused"
        return "waiting"

    # --- allocation -----------------------------------------------------------------------------

    def _extra_supply(self, pressure: bool) -> int:
        pol = self.policy
        n = 0
        if pol.preference_only:
            n += self.pool.free_count[2]
        for obj in self._objects_in_order():
            if not obj.pinned or not self._protecting(obj):
                continue
            if pol.count_protection:
                need = max(c.spec.predicate.k for c in self._obj_claims(obj)
                           if self.protected_now(c))
                n += max(0, obj.n_present - need)
            elif (pol.late_announce or pol.conflict_noadmit) and pressure:
                n += obj.n_present
        return n

    def _take_free(self, t: int, reason: str, victims: List[Victim]) -> int:
        pool = self.pool
        b = pool.front(t)
        h = pool.block_hash[b]
        b = pool.pop(t)
        if h is not None:
            victims.append(self._victim(b, h, reason))
        return b

    def _victim(self, b: int, h: int, reason: str) -> Victim:
        hit = self._where.get(h)
        if hit is None:
            return Victim(b, None, None, False, reason)
        obj, p = hit
        prot = any(self._recorded_protected(c) for c in self._obj_claims(obj))
        self._lost(obj, p)
        return Victim(b, obj.object_id, p, prot, reason)

    def _take_pinned(self, obj: ObjectRecord, head: bool, limit: int, reason: str,
                     victims: List[Victim], out: List[int]) -> None:
        ps = obj.positions()
        order = ps if head else list(reversed(ps))
        for p in order[:limit]:
            b = self._block_of(obj, p)
            h = self.pool.block_hash[b]
            self.pool.take(b)
            victims.append(self._victim(b, h, reason))
            out.append(b)

    def _gather(self, n: int, pressure: bool, victims: List[Victim]) -> List[int]:
        """n blocks for a new owner, in the runtime's order: free blocks first (unhashed at the
        front), then the LRU order of the queue, then whatever the policy lets it reach."""
        pol, pool = self.policy, self.pool
        out: List[int] = []
        for t in (0, 1):
            while len(out) < n and pool.free_count[t]:
                out.append(self._take_free(t, "lru", victims))
        if len(out) == n:
            return out
        for obj in self._overdue_pinned():
            if len(out) < n:
                self._take_pinned(obj, False, n - len(out), "overdue", victims, out)
        if pol.preference_only:
            while len(out) < n and pool.free_count[2]:
                out.append(self._take_free(2, "lower_priority_exhausted", victims))
        for obj in self._objects_in_order():
            if len(out) >= n or not obj.pinned or not self._protecting(obj):
                continue
            if pol.count_protection:
                keep = max(c.spec.predicate.k for c in self._obj_claims(obj)
                           if self.protected_now(c))
                self._take_pinned(obj, True, min(n - len(out), obj.n_present - keep),
                                  "count_surplus", victims, out)
            elif (pol.late_announce or pol.conflict_noadmit) and pressure:
                self._take_pinned(obj, False, n - len(out), "pressure", victims, out)
        assert len(out) == n, (len(out), n)
        return out

    def _after_loss(self, victims: Sequence[Victim], cause: str,
                    request_id: Optional[str]) -> None:
        """Victim events, then what the policy says about claims that lost blocks: harm when
        the predicate broke, or (late_announce) the demotion/expiry after the fact."""
        pol = self.policy
        lost_objs: Dict[str, ObjectRecord] = {}
        for v in victims:
            cid = None
            if v.object_id is not None:
                obj = self.objects[v.object_id]
                lost_objs[v.object_id] = obj
                cs = [c for c in self._obj_claims(obj) if c.status in RESPONSIBLE]
                cid = cs[0].spec.claim_id if cs else None
            self._emit("victim", block_id=v.block_id, blocks=1, object_id=v.object_id,
                       logical_position=v.position, protected=v.protected, reason=v.reason,
                       claim_id=cid, request_id=request_id, cause=cause)
        affected = sorted((c for o in lost_objs.values() for c in self._obj_claims(o)),
                          key=lambda c: c.order)
        changed: Dict[str, ObjectRecord] = {}
        for c in affected:
            obj = lost_objs[c.spec.object_id]
            late = pol.late_announce and self._recorded_protected(c)
            overdue = self._overdue(c)
            judged = (obj.n_present >= c.spec.predicate.k if pol.count_protection
                      else c.pred_present == c.spec.predicate.k)
            if pol.emits_harm and c.status == CS.MATERIALIZED and not late and not judged:
                c.status = CS.HARMED
                self._claim_event("claim_harmed", c, cause=cause, request_id=request_id,
                                  predicate_before=True, predicate_after=False)
                changed[obj.object_id] = obj
            if late:
                c.status = CS.EXPIRED if overdue else CS.DEMOTED
                self._claim_event("claim_expired" if overdue else "claim_demoted", c,
                                  late=True, request_id=request_id)
                changed[obj.object_id] = obj
        for obj in changed.values():        # only a claim whose status moved re-places
            self._replace(obj)

    def admit(self, request_id: str, admit_future_reuse: Optional[bool] = None) -> Admission:
        """Allocate a pending request's live blocks (chunk by chunk under its attention mode).
        Not taken when the policy cannot find the blocks without breaking what it protects."""
        r = self._request(request_id)
        if r.status not in (RS.NONE, RS.DEFERRED):
            return Admission(False, note="request is not pending")
        pol = self.policy
        admit = r.admit_future_reuse if admit_future_reuse is None else admit_future_reuse
        hits = self._hits(r)
        need = r.live_required - hits
        pressure = need > self.unprotected_supply()
        if pressure and need > self.unprotected_supply() + self._extra_supply(pressure):
            return Admission(False, admit, note="not enough blocks without protected ones")
        if pol.conflict_noadmit and pressure:
            # its one answer to a conflict: deny future reuse, as if that freed room
            admit = False
            self._conflict(request_id, "serve_no_admit", (), need=0)
        victims: List[Victim] = []
        held = [self._block_of_hash(h) for h in r.hashes[:hits]]
        for b in held:
            self.pool.touch(b)
        new = self._prefill(r, hits, need, pressure, victims, admit)
        r.blocks = held + new
        r.status, r.admit_future_reuse = RS.RUNNING, admit
        self._running_live += len(r.blocks)
        self._after_loss(victims, f"admit:{request_id}", request_id)
        self._emit("request_admitted", request_id=request_id, live_blocks=len(r.blocks),
                   cached_blocks_hit=hits, admit_future_reuse=admit,
                   attention=r.attention.value, peak_live_blocks=r.peak_live)
        return Admission(True, admit, tuple(victims))

    def _block_of_hash(self, h: int) -> int:
        return self.pool.cache[h]

    def _prefill(self, r: RequestRecord, hits: int, need: int, pressure: bool,
                 victims: List[Victim], admit: bool) -> List[int]:
        """Compute the prompt's blocks after the hits, chunk by chunk.  Full attention keeps
        every chunk; a sliding window frees blocks that leave the window; recompute keeps
        only the current chunk.  Peak live is recorded; blocks are hashed if admitted."""
        if r.attention == Attention.FULL:
            blocks = self._gather(need, pressure, victims)
            if admit:
                for p, b in enumerate(blocks, start=hits):
                    self._store(b, r.hashes[p])
            r.peak_live = hits + len(blocks)
            return blocks
        live: List[int] = []
        peak, pos = 0, 0
        for size in chunks(len(r.hashes), r.chunk_blocks):
            if r.attention == Attention.RECOMPUTE:
                self._free_blocks(live)
                live = []
            for _ in range(size):
                if r.attention == Attention.SLIDING_WINDOW and len(live) == r.window_blocks:
                    self._free_blocks(live[:1])
                    live = live[1:]
                b = self._gather(1, pressure, victims)[0]
                if admit:
                    self._store(b, r.hashes[pos])
                live.append(b)
                pos += 1
                peak = max(peak, len(live))
        r.peak_live = peak
        return live

    def _free_blocks(self, blocks: Sequence[int]) -> None:
        """Release blocks tail first; hashed ones join their object's tier (or stay pinned);
        unhashed ones (never admitted for reuse) go to the front."""
        pool = self.pool
        order = blocks[::-1]
        tiers = []
        for b in order:
            hit = self._where.get(pool.block_hash[b])
            tiers.append(max(self._placement(hit[0]), 0) if hit else 0)
        pool.release_all(order, tiers)

    def finish(self, request_id: str) -> bool:
        r = self._request(request_id)
        if r.status != RS.RUNNING:
            return False
        self._free_blocks(r.blocks)
        self._running_live -= len(r.blocks)
        r.blocks = []
        r.status = RS.FINISHED
        self._emit("request_finished", request_id=request_id)
        return True

    # --- housekeeping eviction ------------------------------------------------------------------

    def evict_object_block(self, object_id: str) -> Optional[Victim]:
        """Evict one resident block of an object outside any allocation (the tail block; a
        block-counting runtime takes the head of a claim it counts).  None if not allowed."""
        obj = self._object(object_id)
        if obj.n_present == 0:
            return None
        pol, pool = self.policy, self.pool
        ps = obj.positions()
        prot = self._protecting(obj) and (pol.honours_claims or pol.preference_only)
        head = False
        if prot:
            if pol.preference_only:
                if pool.hashed_free((0, 1)) or any(
                        o.n_present for o in self.objects.values()
                        if o is not obj and not self._protecting(o)):
                    return None
            elif pol.count_protection:
                keep = max(c.spec.predicate.k for c in self._obj_claims(obj)
                           if self.protected_now(c))
                if obj.n_present - 1 < keep:
                    return None
                head = True
            else:
                return None
        p = ps[0] if head else ps[-1]
        b = self._block_of(obj, p)
        h = pool.block_hash[b]
        if pool.ref[b] > (1 if obj.pinned else 0):
            return None                      # in use by a running request
        v = self._victim(b, h, "evict")
        if obj.pinned:
            pool.take(b)
            pool.release(b)
        else:
            pool.drop_hash(b)
        self._after_loss([v], "evict", None)
        return v

    def evict_cached_block(self) -> Optional[Victim]:
        """Evict the least recently used ordinary cached block (claimed by nobody)."""
        pool = self.pool
        for b in pool.queue(0):
            h = pool.block_hash[b]
            if h is not None and h not in self._where:
                pool.drop_hash(b)
                v = Victim(b, None, None, False, "evict")
                self._after_loss([v], "evict", None)
                return v
        return None

    # --- abstraction helpers ----------------------------------------------------------------------

    def ordinary_cached(self) -> int:
        """Hashed free blocks that belong to no registered object."""
        pool = self.pool
        return sum(1 for h, b in pool.cache.items() if h not in self._where and pool.ref[b] == 0)

