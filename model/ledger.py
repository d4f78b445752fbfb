"""The claim ledger: one definition of the claim lifecycle a runtime keeps on top of its pool
(docs/CONTRACT.md sections 3-7), shared by the MicroRuntime and the vLLM claim arbiter.

The ledger knows objects (prefixes, as the block hashes of their logical positions), claims,
pending and running requests, the logical clock, telemetry and counters. It does not know a
pool: it reaches one through a small ``Residency`` (which block carries a hash, how many blocks
an allocation can take without touching a pinned one, pin and unpin), and the runtime tells it
what physically happened with two calls:

- ``stored(h)``: a block carrying hash ``h`` became resident. Every object with ``h`` at some
  position sees it (content is shared: a system prompt is a prefix of each conversation that
  starts with it), and an object whose claims protect it has the block pinned at once (O3: a
  block of an accepted hard claim is never an ordinary victim, even one that arrived after
  acceptance).
- ``evicted(h, block_id, reason)``: the block carrying ``h`` was taken for reuse. Every
  object with ``h`` at some position lost that position; ``settle`` then emits a victim event
  per (object, position) and judges harm by each claim's predicate (O5), so no object sharing
  the content misses its loss.

Records of ended requests and claims are dropped after ``keep_ended`` newer ones ended, and an
object with no live claim is forgotten, so a server's ledger stays bounded.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import (Any, Deque, Dict, Hashable, List, Optional, Protocol, Sequence,
                    Tuple)

from kvclaims.spec.policy import POLICIES, Naming, Policy, policy_by_name
from kvclaims.spec.state import default_cap, headroom_given
from kvclaims.spec.vocab import (ClaimStatus as CS, Mode, PROTECTED_MODES, RESPONSIBLE,
                                 RequestStatus as RS)

from .claims import (ClaimError, ClaimSpec, Decision, MODE_NAMES, acceptance_decision,
                     decide_claim, reserved_footprint, validate_claim)
from .telemetry import Telemetry
from .tenancy import ClaimLimits

COUNTER_EVENTS = ("accepted", "rejected", "materialized", "harmed", "demoted", "expired",
                  "released", "deferred", "refused", "bad_input")
SOFT_MODES = (Mode.SOFT_PRIORITY, Mode.BEST_EFFORT)


class Residency(Protocol):
    """What the ledger needs of a pool."""

    usable: int

    def block_of(self, block_hash: Hashable) -> Any:
        """The resident block carrying ``block_hash``, or None."""

    def free_blocks(self) -> int:
        """Blocks an allocation can take now without touching a pinned block."""

    def pin(self, blocks: List[Any]) -> None:
        """One reference each: out of the free queue, never a victim."""

    def unpin(self, blocks_tail_first: List[Any]) -> None:
        """Drop those references; the first block given is evicted first."""

    # Optional: ``place(obj)``, called after every change of an object's protection (once its
    # pins are taken or dropped), for a pool that also files unpinned blocks by how they are
    # claimed (the MicroRuntime's free-queue tiers for soft and preference-only claims).


@dataclass
class ObjectRec:
    object_id: str
    hashes: List[Hashable]
    owner: Optional[str] = None
    salt: Optional[str] = None
    present: bytearray = field(default_factory=bytearray)
    n_present: int = 0
    pinned: Dict[int, Any] = field(default_factory=dict)   # position -> block we hold
    stored: bool = False                                   # object_stored announced
    claims: List[str] = field(default_factory=list)

    @property
    def n_blocks(self) -> int:
        return len(self.hashes)

    def positions(self) -> List[int]:
        return [p for p, x in enumerate(self.present) if x]

    def leading(self) -> int:
        n = 0
        while n < len(self.present) and self.present[n]:
            n += 1
        return n


@dataclass
class ClaimRec:
    spec: ClaimSpec
    order: int
    status: CS = CS.SUBMITTED
    accepted_at: int = 0
    pred_present: int = 0          # resident positions inside the predicate's range
    reason: str = ""


@dataclass
class RequestRec:
    request_id: str
    status: RS = RS.NONE
    live: int = 0
    admit: bool = True
    named: Tuple[str, ...] = ()
    deferred_at: int = 0           # ledger step at which it was deferred


@dataclass(frozen=True)
class Victim:
    block_id: int
    object_id: Optional[str]
    position: Optional[int]
    protected: bool
    reason: str


_PROM: Any = None


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


def headroom_and_cap(usable: int, cap: Optional[int],
                     headroom: Optional[int]) -> Tuple[int, int]:
    """(headroom, cap) after the defaults, or ValueError (one line): the acceptance cap
    exists to keep room for active work, so cap <= usable - headroom. Without a cap the
    default headroom applies and cap = usable - headroom; an operator who sets a cap and no
    headroom has chosen the headroom usable - cap."""
    for name, v in (("cap", cap), ("headroom", headroom)):
        if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
            raise ValueError(f"protected {name} must be an integer, got {v!r}")
    if cap is not None and not 0 <= cap <= usable:
        raise ValueError(f"protected cap {cap} must be between 0 and the usable pool {usable}")
    headroom = headroom_given(usable, cap, headroom)
    if not 0 <= headroom <= usable:
        raise ValueError(f"headroom {headroom} must be between 0 and the usable pool {usable}")
    if cap is None:
        cap = default_cap(usable, headroom)
    if not 0 <= cap <= usable - headroom:
        raise ValueError(f"protected cap {cap} must be between 0 and usable - headroom = "
                         f"{usable - headroom}")
    return headroom, cap


class ClaimLedger:
    def __init__(self, residency: Residency, *, policy: Any = "hard_refuse",
                 cap: Optional[int] = None, telemetry: Optional[Telemetry] = None,
                 max_duration: Optional[int] = None, keep_ended: Optional[int] = 4096,
                 prometheus: bool = False, headroom: Optional[int] = None,
                 limits: Optional[ClaimLimits] = None):
        self.residency = residency
        self.limits = limits if limits is not None else ClaimLimits()
        if isinstance(policy, str):
            try:
                policy = policy_by_name(policy)
            except KeyError:        # a runtime configured with a policy nobody implemented
                raise ValueError(f"unknown claim policy {policy!r} (choose from "
                                 f"{', '.join(POLICIES)})") from None
        self.policy: Policy = policy
        self.pins = self.policy.honours_claims and not self.policy.preference_only
        self.usable = residency.usable
        self.headroom, self.cap = headroom_and_cap(self.usable, cap, headroom)
        self.max_duration = max_duration
        # the runtime's bounded-response promise (O14), in ticks; stated on every deferral so
        # a trace validator knows the bound it is held to (None: the runtime states none)
        self.response_ticks: Optional[int] = None
        self.telemetry = telemetry if telemetry is not None else Telemetry()
        self.clock = 0
        self.objects: Dict[str, ObjectRec] = {}
        self.claims: Dict[str, ClaimRec] = {}
        self.requests: Dict[str, RequestRec] = {}
        self._where: Dict[Hashable, List[Tuple[ObjectRec, int]]] = {}
        self._pending: List[str] = []          # accepted, not yet materialized
        # what the pool did, in order, not yet announced: ("stored", object id, position) or
        # ("lost", Victim, request id, claims whose predicate that loss broke)
        self._log: List[Tuple[Any, ...]] = []
        self._flushing = False
        self._expiring: Dict[str, ClaimRec] = {}
        self.cause: Optional[str] = None       # request whose allocation is under way
        self._pinned_blocks: Dict[int, int] = {}    # block id -> objects pinning it
        self.active_live = 0
        self.counters: Dict[str, int] = {k: 0 for k in COUNTER_EVENTS}
        self._prom = _prometheus_counter() if prometheus else None
        self._orders = 0
        self._ended: Deque[Tuple[str, str]] = deque()    # ("claim"|"request", id)
        self.keep_ended = keep_ended          # None: ended records are kept
        self._place = getattr(residency, "place", None)

    # --- telemetry ----------------------------------------------------------------------------

    def emit(self, type_: str, **fields):
        if self._log and not self._flushing:
            self.flush()
        return self.telemetry.emit(type_, policy=self.policy.name, usable_blocks=self.usable,
                                   clock=self.clock, **fields)

    def count(self, event: str) -> None:
        self.counters[event] += 1
        if self._prom is not None:
            self._prom.labels(event=event, policy=self.policy.name).inc()

    def claim_fields(self, c: ClaimRec) -> dict:
        obj = self.objects.get(c.spec.object_id)
        return {"claim_id": c.spec.claim_id, "object_id": c.spec.object_id,
                "owner_scope": c.spec.owner_scope, "predicate": c.spec.predicate.to_json(),
                "blocks_required": c.spec.predicate.k,
                "blocks_materialized": obj.n_present if obj else 0,
                "leading_blocks_survived": obj.leading() if obj else 0,
                "protection_mode": MODE_NAMES[c.spec.protection_mode]}

    def claim_event(self, type_: str, c: ClaimRec, **extra):
        return self.emit(type_, **self.claim_fields(c), **extra)

    @property
    def protected_resident(self) -> int:
        """Distinct pool blocks pinned for protecting claims (a shared block counts once)."""
        return len(self._pinned_blocks)

    # --- objects ------------------------------------------------------------------------------

    def register_object(self, object_id: str, hashes: Sequence[Hashable],
                        owner: Optional[str] = None, salt: Optional[str] = None,
                        rec: Optional[ObjectRec] = None) -> ObjectRec:
        """``rec``: the runtime's own record (an ObjectRec subclass) with its fields filled;
        by default a plain ObjectRec."""
        obj = self.objects.get(object_id)
        if obj is not None:
            return obj
        if rec is None:
            obj = ObjectRec(object_id, list(hashes), owner, salt, bytearray(len(hashes)))
        else:
            obj, obj.object_id, obj.hashes = rec, object_id, list(hashes)
            obj.present, obj.n_present = bytearray(len(obj.hashes)), 0
        for p, h in enumerate(obj.hashes):
            self._where.setdefault(h, []).append((obj, p))
            if self.residency.block_of(h) is not None:
                obj.present[p] = 1
                obj.n_present += 1
                # content already in the pool (shared with another prompt): announced with
                # the next event, so the trace's residency record knows it
                self._log.append(("stored", object_id, p))
        self.objects[object_id] = obj
        for c in self.claims.values():      # a claim submitted before its object
            if c.spec.object_id == object_id:
                obj.claims.append(c.spec.claim_id)
                c.pred_present = self._pred_count(obj, c)
        return obj

    def _forget_object(self, obj: ObjectRec) -> None:
        """Drop an object no claim needs any more (its pins are already gone)."""
        if self.objects.get(obj.object_id) is not obj:
            return
        del self.objects[obj.object_id]
        for p, h in enumerate(obj.hashes):
            lst = self._where.get(h)
            if lst is None:
                continue
            lst[:] = [(o, q) for o, q in lst if o is not obj]
            if not lst:
                del self._where[h]

    def live_claims(self, obj: ObjectRec) -> List[str]:
        """Claims on the object still pending a decision or under responsibility."""
        return [cid for cid in obj.claims
                if cid in self.claims and (self.claims[cid].status in RESPONSIBLE
                                           or self.claims[cid].status == CS.SUBMITTED)]

    def forget_object(self, obj: ObjectRec) -> None:
        """Forget an object none of whose claims is live (a rejected claim registers
        nothing; a new claim on an old object id starts afresh)."""
        if self.live_claims(obj):
            raise ValueError(f"object {obj.object_id} still has live claims")
        obj.claims.clear()
        self.refresh(obj)
        self._forget_object(obj)

    def known_hash(self, h: Hashable) -> bool:
        return h in self._where

    def holders(self, h: Hashable) -> List[Tuple[ObjectRec, int]]:
        """Every (object, position) whose content is ``h``."""
        return self._where.get(h, [])

    def pins_on(self, block_id: int) -> int:
        """How many objects hold a pin on the block."""
        return self._pinned_blocks.get(block_id, 0)

    def interval(self, object_id: str):
        """[lo, hi) of the object's resident positions; (0, 0) when none; when they are not
        an interval, ("non-interval", positions)."""
        ps = self.objects[object_id].positions()
        if not ps:
            return (0, 0)
        if ps[-1] + 1 - ps[0] != len(ps):
            return ("non-interval", tuple(ps))
        return (ps[0], ps[-1] + 1)

    def _pred_count(self, obj: ObjectRec, c: ClaimRec) -> int:
        p = c.spec.predicate
        return sum(obj.present[p.start:p.end])

    def pred_holds(self, c: ClaimRec) -> bool:
        """O5: every logical position of the predicate's range is resident."""
        return c.pred_present == c.spec.predicate.k

    def _announce_stored(self, obj: ObjectRec, new: List[int]) -> None:
        """So an observer holding only the trace knows which positions are resident."""
        obj.stored = True
        self.emit("object_stored", object_id=obj.object_id, blocks=obj.n_present,
                  positions=new)

    # --- what the pool did --------------------------------------------------------------------

    def stored(self, h: Hashable) -> None:
        """A block carrying ``h`` is resident now."""
        hits = self._where.get(h)
        if not hits:
            return
        for obj, p in hits:
            if obj.present[p]:
                continue
            obj.present[p] = 1
            obj.n_present += 1
            for cid in obj.claims:
                c = self.claims[cid]
                if c.spec.predicate.start <= p < c.spec.predicate.end:
                    c.pred_present += 1
            if obj.pinned or self.wants_pin(obj):
                self._pin_position(obj, p)
            self._log.append(("stored", obj.object_id, p))

    def _judged(self, c: ClaimRec, obj: ObjectRec) -> bool:
        """Whether the claim counts as present, as the policy judges it (O5: by the
        predicate; a block-counting lowering by the count)."""
        if self.policy.count_protection:
            return obj.n_present >= c.spec.predicate.k
        return self.pred_holds(c)

    def evicted(self, h: Hashable, block_id: int, reason: str = "lru") -> None:
        """The pool took the block carrying ``h`` for reuse. The harm is judged now, at the
        loss: content recomputed later in the same step does not undo it."""
        hits = self._where.get(h)
        if not hits or self.residency.block_of(h) is not None:
            return          # unknown content, or a duplicate copy went and one stays
        for obj, p in hits:
            if not obj.present[p]:
                continue
            before = [c for c in (self.claims[cid] for cid in obj.claims)
                      if c.status == CS.MATERIALIZED and self._judged(c, obj)]
            obj.present[p] = 0
            obj.n_present -= 1
            for cid in obj.claims:
                c = self.claims[cid]
                if c.spec.predicate.start <= p < c.spec.predicate.end:
                    c.pred_present -= 1
            if p in obj.pinned:          # never for a pinned block; kept exact regardless
                self._drop_pin(obj.pinned.pop(p))
            prot = any(self.recorded_protected(self.claims[cid]) for cid in obj.claims)
            broken = tuple(c.spec.claim_id for c in before if not self._judged(c, obj))
            self._log.append(("lost", Victim(block_id, obj.object_id, p, prot, reason),
                              self.cause, broken))

    def evicted_unclaimed(self, block_id: int, reason: str = "lru") -> None:
        """The pool took a cached block of no known object: announced as an ordinary victim
        (object None), for a runtime whose trace records every eviction."""
        self._log.append(("lost", Victim(block_id, None, None, False, reason), self.cause, ()))

    def charge_losses(self, owner_of) -> None:
        """Name the allocating request of losses logged without one: ``owner_of(block_id)``
        is the request now holding the block the pool handed out (a runtime that cannot
        say which allocation is under way while it happens asks afterwards)."""
        for n, entry in enumerate(self._log):
            if entry[0] == "lost" and entry[2] is None:
                rid = owner_of(entry[1].block_id)
                if rid is not None:
                    self._log[n] = (entry[0], entry[1], rid, entry[3])

    def has_unnamed_losses(self) -> bool:
        return any(e[0] == "lost" and e[2] is None for e in self._log)

    def flush(self, cause: Optional[str] = None,
              request_id: Optional[str] = None) -> List[Victim]:
        """Announce what the pool did, in the order it happened: one object_stored per run
        of stored positions of an object; a victim event per lost (object, position), and
        after each run of victims what the policy says of the claims they hit (harm when the
        loss broke the predicate; a late-announcing lowering's demotion or expiry). Then
        the claims whose predicate now holds materialize. ``cause``/``request_id``: for
        losses whose allocation did not name its request."""
        if self._flushing:
            return []
        self._flushing = True
        try:
            log, self._log = self._log, []
            i = 0
            while i < len(log):
                j = i
                kind = log[i][0]
                while j < len(log) and log[j][0] == kind:
                    j += 1
                if kind == "stored":
                    self._emit_stored(log[i:j])
                else:
                    self._emit_lost(log[i:j], cause, request_id)
                i = j
        finally:
            self._flushing = False
        if self._pending:
            self.check_materialized()
        return [e[1] for e in log if e[0] == "lost"]

    def _emit_stored(self, run: List[Tuple[Any, ...]]) -> None:
        by_obj: Dict[str, List[int]] = {}
        for _, oid, p in run:
            by_obj.setdefault(oid, []).append(p)
        for oid, ps in by_obj.items():
            obj = self.objects.get(oid)
            if obj is not None:
                self._announce_stored(obj, sorted(set(ps)))

    def _emit_lost(self, run: List[Tuple[Any, ...]], cause: Optional[str],
                   request_id: Optional[str]) -> None:
        pol = self.policy
        broken: List[Tuple[str, Optional[str]]] = []
        touched: Dict[str, Optional[str]] = {}
        for _, v, rid, brk in run:
            rid = rid or request_id
            why = f"admit:{rid}" if rid else (cause or "allocation")
            obj = self.objects.get(v.object_id)
            cids = [cid for cid in obj.claims] if obj is not None else []
            live = [cid for cid in cids if self.claims[cid].status in RESPONSIBLE]
            self.emit("victim", block_id=v.block_id, blocks=1, object_id=v.object_id,
                      logical_position=v.position, protected=v.protected, reason=v.reason,
                      claim_id=live[0] if live else None, request_id=rid, cause=why)
            broken += [(cid, rid) for cid in brk]
            for cid in cids:
                touched.setdefault(cid, rid)
        done = set()
        for cid, rid in broken:
            c = self.claims.get(cid)
            if (cid in done or c is None or c.status != CS.MATERIALIZED or not pol.emits_harm
                    or (pol.late_announce and self.recorded_protected(c))):
                continue
            done.add(cid)
            self.count("harmed")
            self._end(c, CS.HARMED, "claim_harmed",
                      cause=f"admit:{rid}" if rid else (cause or "allocation"),
                      request_id=rid, predicate_before=True, predicate_after=False)
        if pol.late_announce:
            for cid, rid in touched.items():
                c = self.claims.get(cid)
                if c is None or not self.recorded_protected(c):
                    continue
                overdue = self.overdue(c)
                self.count("expired" if overdue else "demoted")
                self._end(c, CS.EXPIRED if overdue else CS.DEMOTED,
                          "claim_expired" if overdue else "claim_demoted",
                          late=True, request_id=rid)
        for _, v, _, _ in run:
            obj = self.objects.get(v.object_id)
            if obj is not None and obj.stored and obj.n_present == 0:
                obj.stored = False

    def settle(self, cause: str, request_id: Optional[str] = None) -> List[Victim]:
        """After an allocation (or eviction): announce it; the victims announced."""
        return self.flush(cause, request_id)

    # --- protection ---------------------------------------------------------------------------

    def overdue(self, c: ClaimRec) -> bool:
        return (c.spec.protection_mode == Mode.EXPIRING and c.spec.duration is not None
                and self.clock >= c.accepted_at + c.spec.duration)

    def recorded_protected(self, c: ClaimRec) -> bool:
        return c.status in RESPONSIBLE and c.spec.protection_mode in PROTECTED_MODES

    def protected_now(self, c: ClaimRec) -> bool:
        """Its blocks may not be ordinary victims: responsible, protecting mode, in time."""
        return self.recorded_protected(c) and not self.overdue(c)

    def protecting(self, obj: ObjectRec) -> bool:
        return any(self.protected_now(self.claims[cid]) for cid in obj.claims)

    def soft_claimed(self, obj: ObjectRec) -> bool:
        return any(self.claims[cid].status in RESPONSIBLE
                   and self.claims[cid].spec.protection_mode in SOFT_MODES for cid in obj.claims)

    def wants_pin(self, obj: ObjectRec) -> bool:
        return self.pins and self.protecting(obj)

    def _pin_position(self, obj: ObjectRec, p: int) -> None:
        b = self.residency.block_of(obj.hashes[p])
        if b is None or p in obj.pinned:
            return
        obj.pinned[p] = b
        self.residency.pin([b])
        bid = self._block_id(b)
        self._pinned_blocks[bid] = self._pinned_blocks.get(bid, 0) + 1

    @staticmethod
    def _block_id(b: Any) -> int:
        return b if isinstance(b, int) else b.block_id

    def _drop_pin(self, b: Any) -> None:
        bid = self._block_id(b)
        n = self._pinned_blocks.get(bid, 0) - 1
        if n > 0:
            self._pinned_blocks[bid] = n
        else:
            self._pinned_blocks.pop(bid, None)

    def refresh(self, obj: ObjectRec) -> None:
        """Hold references on exactly the resident blocks of an object its claims protect;
        released tail first, so the deepest block is the first to go (after the event that
        ended the protection, O4)."""
        if self.wants_pin(obj):
            for p in obj.positions():
                if p not in obj.pinned:
                    self._pin_position(obj, p)
        elif obj.pinned:
            held = [obj.pinned[p] for p in sorted(obj.pinned, reverse=True)]
            obj.pinned = {}
            for b in held:
                self._drop_pin(b)
            self.residency.unpin(held)
        if self._place is not None:
            self._place(obj)

    # --- claims -------------------------------------------------------------------------------

    def submit(self, spec: ClaimSpec, decide: bool = True) -> Decision:
        """Validate (ClaimError: nothing recorded), record, and by default decide at once."""
        if not isinstance(spec, ClaimSpec):
            raise ClaimError("a claim must be a ClaimSpec")
        obj = self.objects.get(spec.object_id)
        spec = validate_claim(spec, obj.n_blocks if obj else None)
        if spec.claim_id in self.claims:
            self.emit("claim_rejected", claim_id=spec.claim_id, object_id=spec.object_id,
                      reason="duplicate claim_id", duplicate=True)
            return Decision(spec.claim_id, False, "duplicate claim_id")
        c = ClaimRec(spec, self._orders)
        self._orders += 1
        self.claims[spec.claim_id] = c
        if obj is not None:
            obj.claims.append(spec.claim_id)
            c.pred_present = self._pred_count(obj, c)
        self.claim_event("claim_submitted", c, footprint_blocks=spec.footprint_blocks,
                         duration=spec.duration, cache_identity=spec.cache_identity.to_json())
        if not decide:
            return Decision(spec.claim_id, False, "pending")
        return self.decide(spec.claim_id)

    def claim_object(self, spec: ClaimSpec, hashes: Sequence[Hashable],
                     salt: Optional[str] = None) -> Decision:
        """A tenant's claim on an object given by its content (the hashes of its blocks):
        the object is registered for the claim and bound to the tenant only by an accepted
        claim; a claim that fails (ClaimError: malformed, another tenant's live object,
        different content, claim id in use) or is rejected leaves no record of the object
        behind, so a failed claim never squats an object id."""
        spec = validate_claim(spec, len(hashes))
        obj = self.objects.get(spec.object_id)
        live = self.live_claims(obj) if obj is not None else []
        if live:
            if any(self.claims[c].spec.owner_scope != spec.owner_scope for c in live):
                raise ClaimError(f"object {spec.object_id!r} belongs to another tenant")
            if obj.hashes != list(hashes):
                raise ClaimError(f"object {spec.object_id!r} is registered with different "
                                 f"content")
        if spec.claim_id in self.claims:
            raise ClaimError(f"claim_id {spec.claim_id!r} is already in use")
        # a record with the same content is kept (a runtime's own object, or one whose
        # claims ended); other content under an unclaimed id starts afresh
        created = obj is None or (not live and obj.hashes != list(hashes))
        if created:
            if obj is not None:
                self.forget_object(obj)
            obj = self.register_object(spec.object_id, hashes, owner=spec.owner_scope,
                                       salt=salt)
        decision = None
        try:
            decision = self.submit(spec)
        finally:
            if (created and (decision is None or not decision.accepted)
                    and not self.live_claims(obj)):
                self.forget_object(obj)
        return decision

    def reserved_footprint(self) -> int:
        return reserved_footprint(self.claims.values())

    def acceptance(self, claim_id: str) -> Tuple[bool, str]:
        spec = self.claims[claim_id].spec
        if (self.max_duration is not None and spec.duration is not None
                and spec.duration > self.max_duration):
            return False, f"duration {spec.duration} exceeds the maximum {self.max_duration}"
        over = self.limits.violation(spec, (c.spec for c in self.claims.values()
                                            if c.status in RESPONSIBLE))
        if over is not None:
            return False, over
        return acceptance_decision(spec, self.reserved_footprint(), self.cap)

    def decide(self, claim_id: str) -> Decision:
        return decide_claim(self, claim_id)

    def accept(self, claim_id: str) -> bool:
        c = self.claims.get(claim_id)
        if c is None or c.status != CS.SUBMITTED or not self.acceptance(claim_id)[0]:
            return False
        c.status, c.accepted_at = CS.ACCEPTED, self.clock
        if c.spec.protection_mode == Mode.EXPIRING and c.spec.duration is not None:
            self._expiring[claim_id] = c     # tick looks at these only, not every record
        self.count("accepted")
        self.claim_event("claim_accepted", c, cap_blocks=self.cap,
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
        c.reason = reason
        self.count("rejected")
        self._end(c, CS.REJECTED, "claim_rejected", reason=reason)
        return True

    def check_materialized(self) -> List[str]:
        """Accepted claims whose predicate now holds become materialized (only the pending
        ones are looked at)."""
        done = []
        for cid in list(self._pending):
            c = self.claims.get(cid)
            if c is None or c.status != CS.ACCEPTED:
                self._pending.remove(cid)
                continue
            obj = self.objects.get(c.spec.object_id)
            if obj is not None and self.pred_holds(c):
                if not obj.stored:
                    self._announce_stored(obj, obj.positions())
                c.status = CS.MATERIALIZED
                self._pending.remove(cid)
                self.count("materialized")
                self.claim_event("claim_materialized", c)
                done.append(cid)
        return done

    def _end(self, c: ClaimRec, status: CS, type_: str, **extra) -> None:
        """The event first, then the blocks become ordinary cache (O4); the record is
        retired (kept for ``keep_ended`` more endings, then dropped)."""
        c.status = status
        self._expiring.pop(c.spec.claim_id, None)
        self.claim_event(type_, c, **extra)
        obj = self.objects.get(c.spec.object_id)
        if obj is not None:
            self.refresh(obj)
        self._retire("claim", c.spec.claim_id)

    def release(self, claim_id: str, actor: str) -> bool:
        """Release by the owner; anyone else's release is refused and reported (O10)."""
        c = self.claims.get(claim_id)
        if c is None or c.status not in RESPONSIBLE:
            return False
        if self.policy.owner_check and actor != c.spec.owner_scope:
            self.emit("release_denied", claim_id=claim_id, object_id=c.spec.object_id,
                      actor=actor, reason="only the owner may release a claim")
            return True
        self.count("released")
        self._end(c, CS.RELEASED, "claim_released", actor=actor)
        return True

    def can_demote(self, c: ClaimRec) -> bool:
        obj = self.objects.get(c.spec.object_id)
        # mode honesty (O13): only a demotable claim may be relaxed; a hard_protected one
        # ends only by its owner's release, an expiring one by its expiry
        return (self.policy.demote_on_conflict and c.spec.protection_mode == Mode.DEMOTABLE
                and self.protected_now(c) and obj is not None and obj.n_present > 0)

    def demote(self, claim_id: str, request_id: str) -> bool:
        """Relax a claim standing in a pending request's way, event first. The caller has
        judged the conflict (its own notion of what the request needs)."""
        c = self.claims.get(claim_id)
        r = self.requests.get(request_id)
        if c is None or not self.can_demote(c) or (
                r is not None and r.status not in (RS.NONE, RS.DEFERRED)):
            return False
        self.count("demoted")
        self._end(c, CS.DEMOTED, "claim_demoted", request_id=request_id)
        return True

    def tick(self) -> List[str]:
        """Advance the logical clock; overdue expiring claims expire in the same step, event
        first (unless the policy skips the check)."""
        self.clock += 1
        out = []
        if self.policy.expiry_check and self._expiring:
            for cid, c in sorted(self._expiring.items(), key=lambda kv: kv[1].order):
                if c.status not in RESPONSIBLE:
                    del self._expiring[cid]
                elif self.overdue(c):
                    self.count("expired")
                    self._end(c, CS.EXPIRED, "claim_expired")
                    out.append(cid)
        return out

    # --- conflicts ----------------------------------------------------------------------------

    def claims_in_order(self) -> List[ClaimRec]:
        return sorted(self.claims.values(), key=lambda c: c.order)

    def blocking_claims(self) -> Tuple[str, ...]:
        """O8: every claim whose protected blocks are resident now, and no other."""
        out = []
        for c in self.claims_in_order():
            if not self.protected_now(c):
                continue
            obj = self.objects.get(c.spec.object_id)
            if obj is not None and obj.n_present > 0:
                out.append(c.spec.claim_id)
        return tuple(out)

    def named(self) -> Tuple[str, ...]:
        """What a conflict names, as the policy says (exact for conformant ones)."""
        if self.policy.naming == Naming.EXACT:
            return self.blocking_claims()
        if self.policy.naming == Naming.SUBSET:      # forgets the latest blocking claim
            return self.blocking_claims()[:-1]
        return tuple(c.spec.claim_id for c in self.claims_in_order() if c.status in RESPONSIBLE)

    def request(self, request_id: str) -> RequestRec:
        r = self.requests.get(request_id)
        if r is None:
            r = self.requests[request_id] = RequestRec(request_id)
        return r

    def conflict(self, request_id: str, *, live: int, new_blocks: int, infeasible: bool,
                 action: str, named: Optional[Tuple[str, ...]] = None) -> Tuple[str, ...]:
        """The conflict event (docs/CONTRACT.md section 7). ``live``: the blocks the request
        holds once served; ``new_blocks``: those not already counted as protected resident
        (a hit on a claimed prefix shares blocks with the claim)."""
        named = self.named() if named is None else named
        prot = self.protected_resident
        total = prot + self.active_live + new_blocks
        # the shortfall is what the claims cost the request (O16): running requests finish
        self.emit("conflict", request_id=request_id, blocking_claim_ids=list(named),
                  protected_resident_blocks=prot, active_live_blocks_required=live,
                  resident_plus_active_blocks=total,
                  capacity_shortfall_blocks=max(0, prot + new_blocks - self.usable),
                  free_blocks_before_allocate=self.residency.free_blocks(),
                  feasibility="infeasible" if infeasible else "wait", arbiter_action=action,
                  **({"response_ticks": self.response_ticks}
                     if action == "defer" and self.response_ticks is not None else {}))
        return named

    def hold_back(self, request_id: str, status: RS, *, live: int, new_blocks: int,
                  infeasible: bool, reason: Optional[str] = None) -> RequestRec:
        """Defer or refuse: the conflict event naming the blocking claims, then the request
        event (O3, O8)."""
        r = self.request(request_id)
        action, what = (("defer", "deferred") if status == RS.DEFERRED
                        else ("refuse", "refused"))
        if self.policy.arbitrates:
            r.named = self.conflict(request_id, live=live, new_blocks=new_blocks,
                                    infeasible=infeasible, action=action)
        else:       # a stock runtime's request just waits: no conflict, no claim named
            r.named = ()
        r.status = status
        if status == RS.DEFERRED:
            r.deferred_at = self.clock
        self.count(what)
        extra = {"reason": reason} if reason else {}
        if not self.policy.arbitrates:
            # no conflict event carries what the waiting request needs: say it here
            extra["active_live_blocks_required"] = live
        self.emit(f"request_{what}", request_id=request_id, blocking_claim_ids=list(r.named),
                  **extra)
        if status == RS.REFUSED:
            self._retire("request", request_id)
        return r

    # --- requests -----------------------------------------------------------------------------

    def admitted(self, request_id: str, live_blocks: int, admit: bool = True,
                 hit_blocks: int = 0, **extra: Any) -> None:
        """A request the runtime allocated: victim events and harm first, then admission."""
        self.flush(f"admit:{request_id}", request_id)
        r = self.request(request_id)
        r.status, r.live, r.admit = RS.RUNNING, live_blocks, admit
        self.active_live += live_blocks
        self.emit("request_admitted", request_id=request_id, live_blocks=live_blocks,
                  cached_blocks_hit=hit_blocks, admit_future_reuse=admit, **extra)

    def finished(self, request_id: str) -> bool:
        r = self.requests.get(request_id)
        if r is None or r.status != RS.RUNNING:
            return False
        self.active_live -= r.live
        r.status, r.live = RS.FINISHED, 0
        self.emit("request_finished", request_id=request_id)
        self._retire("request", request_id)
        return True

    def preempted(self, request_id: str) -> None:
        """The runtime took a running request's blocks back (vLLM preemption): it is
        pending again, and admitted again when it is rescheduled."""
        r = self.requests.get(request_id)
        if r is not None and r.status == RS.RUNNING:
            self.active_live -= r.live
            r.status, r.live = RS.NONE, 0

    def forget_request(self, request_id: str) -> None:
        """A request that ended outside the ledger's lifecycle (aborted, bad input)."""
        r = self.requests.pop(request_id, None)
        if r is not None and r.status == RS.RUNNING:
            self.active_live -= r.live

    def close_run(self) -> None:
        """The run-closing event, after everything the pool did is announced: an observer
        calls a trace without it incomplete."""
        self.flush()
        self.telemetry.close_run(policy=self.policy.name, usable_blocks=self.usable,
                                 clock=self.clock)

    # --- bounded memory -----------------------------------------------------------------------

    def _retire(self, kind: str, key: str) -> None:
        if self.keep_ended is None:
            return
        self._ended.append((kind, key))
        while len(self._ended) > self.keep_ended:
            self._drop(*self._ended.popleft())

    def _drop(self, kind: str, key: str) -> None:
        if kind == "request":
            r = self.requests.get(key)
            if r is not None and r.status in (RS.FINISHED, RS.REFUSED):
                del self.requests[key]
            return
        c = self.claims.get(key)
        if c is None or c.status in RESPONSIBLE or c.status == CS.SUBMITTED:
            return
        del self.claims[key]
        obj = self.objects.get(c.spec.object_id)
        if obj is None:
            return
        if key in obj.claims:
            obj.claims.remove(key)
        if not obj.claims:
            self.refresh(obj)
            self._forget_object(obj)

    def records(self) -> Dict[str, int]:
        """Sizes of what the ledger holds (the load harness checks they stay bounded)."""
        return {"claims": len(self.claims), "objects": len(self.objects),
                "requests": len(self.requests), "hashes": len(self._where),
                "ended": len(self._ended)}
