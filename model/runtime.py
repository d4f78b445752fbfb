"""The MicroRuntime: a block-level runtime that implements the resident claim contract.

It keeps its pool as vLLM does (model/pool.py); its claims live in the project's one claim
ledger (kvclaims.model.ledger), the same one the vLLM arbiter keeps over vLLM's pool:

- objects are prefixes of full blocks whose hashes chain through every earlier token and the
  cache identity (another salt or model id never hits); a block belongs to every object whose
  tokens it carries (a system prompt is a prefix of each conversation that starts with it),
  and each of them sees its loss;
- the ledger keeps the claim lifecycle (submit, acceptance control against a cap on protected
  footprint, materialized when the predicate over logical positions first holds, release by
  the owner only, demote, expiry by duration on `tick`, harm), what a conflict names, the
  events and the counters; this module tells it what the pool did (`stored`, `evicted`,
  `settle`) and keeps what is its own: allocation order, attention modes, housekeeping
  eviction, and where an object's blocks go (``PoolResidency``);
- protection is a reference held on each resident block (`pin`), taken the moment a block of
  a protected object is resident: protected blocks are out of the free queue, so keeping them
  costs O(1) per block and an allocation never meets them; soft claims and what a
  preference-only runtime "protects" are free-queue tiers 1 and 2;
- the arbiter is the spec's Policy (kvclaims.spec.policy): the same switches choose how an
  allocation may reach beyond the free queue, what a conflict names, whether harm is emitted.

Every state change is announced through Telemetry with the spec's event type names; the
abstraction onto the spec's state lives in kvclaims.refinement.model_target.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from kvclaims.spec.policy import Policy
from kvclaims.spec.vocab import (ClaimStatus as CS, Feasibility, Lowering,
                                 RequestStatus as RS, lowering_verdict)

from .attention import Attention, chunks, live_blocks_required
from .claims import CacheIdentity, ClaimError, ClaimSpec, Decision, parse_mode  # noqa: F401
from .ledger import ClaimLedger, ClaimRec, ObjectRec, RequestRec, Victim
from .pool import BlockPool
from .telemetry import Telemetry
from .tenancy import ClaimLimits

PIN = -1                      # placement: held by a reference, out of the free queue
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
class ObjectRecord(ObjectRec):
    """The ledger's object record, with what the MicroRuntime keeps of a prefix."""
    identity: CacheIdentity = CacheIdentity()
    order: int = 0
    tokens: Sequence[int] = ()

    def interval(self) -> Optional[Tuple[int, int]]:
        """[lo, hi) of the resident positions, (0, 0) when none, None when not an interval."""
        ps = self.positions()
        if not ps:
            return (0, 0)
        lo, hi = ps[0], ps[-1] + 1
        return (lo, hi) if hi - lo == len(ps) else None


ClaimRecord = ClaimRec


@dataclass
class RequestRecord(RequestRec):
    """The ledger's request record, with the prompt and how it is computed."""
    identity: CacheIdentity = CacheIdentity()
    hashes: List[int] = field(default_factory=list)
    live_required: int = 0
    attention: Attention = Attention.FULL
    chunk_blocks: Optional[int] = None
    window_blocks: Optional[int] = None
    blocks: List[int] = field(default_factory=list)
    peak_live: int = 0
    # ticks spent deferred while the runtime could have answered it (O14's counter)
    waited: int = 0

    @property
    def admit_future_reuse(self) -> bool:
        return self.admit

    @admit_future_reuse.setter
    def admit_future_reuse(self, v: bool) -> None:
        self.admit = v


@dataclass(frozen=True)
class Admission:
    taken: bool
    admit_future_reuse: bool = True
    victims: Tuple[Victim, ...] = ()
    note: str = ""


class PoolResidency:
    """The ledger's view of the MicroRuntime's pool: a pin is one reference (the block leaves
    the free queue); an unpinned block, and every free block of a claimed object, is filed in
    the free-queue tier its claims ask for (``tier_of``: soft claims in tier 1, what a
    preference-only runtime "protects" in tier 2)."""

    def __init__(self, pool: BlockPool):
        self.pool = pool
        self.usable = pool.usable
        self.tier_of = lambda h: 0      # set by the runtime once its ledger exists

    def block_of(self, block_hash: int) -> Optional[int]:
        return self.pool.cache.get(block_hash)

    def free_blocks(self) -> int:
        """Empty blocks (the conflict event's free_blocks_before_allocate)."""
        return self.pool.unhashed_free

    def pin(self, blocks: List[int]) -> None:
        for b in blocks:
            self.pool.touch(b)

    def unpin(self, blocks_tail_first: List[int]) -> None:
        for b in blocks_tail_first:
            self.pool.release(b, self.tier_of(self.pool.block_hash[b]))

    def place(self, obj: ObjectRec) -> None:
        """The object's free blocks go to the tier its claims now ask for, tail first."""
        pool = self.pool
        for p in reversed(obj.positions()):
            b = pool.cache[obj.hashes[p]]
            t = self.tier_of(obj.hashes[p])
            if pool.tier[b] >= 0 and pool.tier[b] != t:
                pool.move(b, t)


class MicroLedger(ClaimLedger):
    """The claim ledger as the MicroRuntime keeps it: a claim's cache identity must be its
    object's, and protected resident KV is every resident block of an object its claims
    protect, however the policy protects it (pinned, or a preference tier)."""

    def acceptance(self, claim_id: str) -> Tuple[bool, str]:
        s = self.claims[claim_id].spec
        obj = self.objects.get(s.object_id)
        if obj is not None and getattr(obj, "identity", s.cache_identity) != s.cache_identity:
            return False, "cache identity differs from the object's"
        return super().acceptance(claim_id)

    @property
    def protected_resident(self) -> int:
        cache = self.residency.pool.cache
        return len({cache[o.hashes[p]] for o in self.objects.values() if self.protecting(o)
                    for p in o.positions()})


class MicroRuntime:
    def __init__(self, num_blocks: int, policy="hard_refuse",
                 protected_cap_blocks: Optional[int] = None, block_size: int = 16,
                 telemetry: Optional[Telemetry] = None, headroom_blocks: Optional[int] = None,
                 response_ticks: Optional[int] = None,
                 limits: Optional[ClaimLimits] = None):
        """``response_ticks``: bounded response (O14), a deferred request the runtime could
        answer (it fits, or it is infeasible) is answered before more than that many ticks
        pass; None leaves answering to the caller (``arbitrate``), as an embedding server's
        scheduling loop does."""
        if response_ticks is not None and (isinstance(response_ticks, bool)
                                           or not isinstance(response_ticks, int)
                                           or response_ticks < 0):
            raise RuntimeUsageError(f"response_ticks must be an integer >= 0, got "
                                    f"{response_ticks!r}")
        self.response_ticks = response_ticks
        self.pool = BlockPool(num_blocks)
        self.block_size = block_size
        residency = PoolResidency(self.pool)
        try:
            self.ledger = MicroLedger(residency, policy=policy, cap=protected_cap_blocks,
                                      telemetry=telemetry, keep_ended=None,
                                      headroom=headroom_blocks, limits=limits)
            self.ledger.response_ticks = response_ticks
        except ValueError as e:
            raise RuntimeUsageError(str(e)) from None
        cap = self.ledger.cap
        residency.tier_of = self._tier_of_hash
        self.policy: Policy = self.ledger.policy
        self.cap = cap
        self.telemetry = self.ledger.telemetry
        self.objects: Dict[str, ObjectRecord] = self.ledger.objects      # type: ignore
        self.claims: Dict[str, ClaimRec] = self.ledger.claims
        self.requests: Dict[str, RequestRecord] = self.ledger.requests  # type: ignore

    # --- telemetry ------------------------------------------------------------------------------

    @property
    def usable(self) -> int:
        return self.pool.usable

    @property
    def clock(self) -> int:
        return self.ledger.clock

    @property
    def counters(self) -> Dict[str, int]:
        return self.ledger.counters

    def _emit(self, type_: str, **fields):
        return self.ledger.emit(type_, **fields)

    # --- objects --------------------------------------------------------------------------------

    def register_object(self, object_id: str, tokens: Sequence[int],
                        identity: CacheIdentity = CacheIdentity()) -> ObjectRecord:
        """Make a prefix known by its tokens (full blocks only).  Its content may be shared:
        blocks already resident under the same hashes count as its own."""
        if not object_id:
            raise RuntimeUsageError("object_id must be non-empty")
        if object_id in self.objects:
            raise RuntimeUsageError(f"object {object_id} already registered")
        hs = block_hashes(tokens, identity, self.block_size)
        if not hs:
            raise RuntimeUsageError(f"object {object_id} has no full block")
        rec = ObjectRecord(object_id, hs, identity=identity, order=len(self.objects),
                           tokens=tokens)
        return self.ledger.register_object(object_id, hs, rec=rec)  # type: ignore

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
        blocks = [self.pool.pop(0) for _ in range(obj.n_blocks)]
        for p, b in enumerate(blocks):
            self._store(b, obj.hashes[p])  # a protected object's block is pinned here
        self.pool.release_all(blocks[::-1], [self._tier_of_hash(h) for h in obj.hashes[::-1]])
        self.ledger.flush()         # object_stored, then the claims it materializes
        return True

    def _store(self, b: int, h: int) -> None:
        """Block b now holds the KV whose hash is h (a duplicate of a cached hash stays
        unhashed, as one block per hash is what the cache can find)."""
        if h in self.pool.cache:
            return
        self.pool.set_hash(b, h)
        self.ledger.stored(h)

    # --- placement ------------------------------------------------------------------------------

    def _placement(self, obj: ObjectRecord) -> int:
        """Where the object's blocks belong: PIN, or a free-queue tier."""
        pol, led = self.policy, self.ledger
        if not pol.honours_claims and not pol.preference_only:
            return 0
        if led.protecting(obj):
            return 2 if pol.preference_only else PIN
        return 1 if led.soft_claimed(obj) else 0

    def _tier_of_hash(self, h: Optional[int]) -> int:
        """A free block's tier: the highest any object holding its content asks for."""
        return max((max(self._placement(o), 0) for o, _ in self.ledger.holders(h)), default=0)

    def _block_of(self, obj: ObjectRecord, p: int) -> int:
        return self.pool.cache[obj.hashes[p]]

    def protected_now(self, c: ClaimRec) -> bool:
        return self.ledger.protected_now(c)

    def _protecting(self, obj: ObjectRecord) -> bool:
        return self.ledger.protecting(obj)

    def _protected_k(self, obj: ObjectRecord) -> int:
        """The largest predicate among the object's protecting claims (a block-counting
        runtime keeps that many blocks)."""
        return max(self.claims[cid].spec.predicate.k for cid in obj.claims
                   if self.protected_now(self.claims[cid]))

    # --- claims ---------------------------------------------------------------------------------

    def submit_claim(self, spec: ClaimSpec, decide: bool = True) -> Decision:
        """Validate (ClaimError on a malformed claim: nothing is recorded), record, and by
        default decide at once."""
        return self.ledger.submit(spec, decide)

    def _claim(self, claim_id: str) -> ClaimRec:
        if claim_id not in self.claims:
            raise RuntimeUsageError(f"unknown claim {claim_id}")
        return self.claims[claim_id]

    def reserved_footprint(self) -> int:
        return self.ledger.reserved_footprint()

    def acceptance(self, claim_id: str) -> Tuple[bool, str]:
        """Acceptance control (model.claims.acceptance_decision), plus: a claim's cache
        identity must be its object's."""
        self._claim(claim_id)
        return self.ledger.acceptance(claim_id)

    def decide(self, claim_id: str) -> Decision:
        if self._claim(claim_id).status != CS.SUBMITTED:
            raise RuntimeUsageError(f"claim {claim_id} is not pending")
        return self.ledger.decide(claim_id)

    def accept(self, claim_id: str) -> bool:
        self._claim(claim_id)
        return self.ledger.accept(claim_id)

    def reject(self, claim_id: str, reason: str = "operator") -> bool:
        """Reject a pending claim (the runtime's decision, or an operator's)."""
        self._claim(claim_id)
        return self.ledger.reject(claim_id, reason)

    def release_claim(self, claim_id: str, actor: str) -> bool:
        """Release by the owner; anyone else's release is refused and reported (O10)."""
        self._claim(claim_id)
        return self.ledger.release(claim_id, actor)

    def demote_claim(self, claim_id: str, request_id: str) -> bool:
        """Relax a claim that stands in a pending request's way (hard_demote), event first:
        its blocks become ordinary cache only after claim_demoted is out."""
        self._claim(claim_id)
        self._request(request_id)
        return self.in_conflict(request_id) and self.ledger.demote(claim_id, request_id)

    def tick(self) -> List[str]:
        """Advance the logical clock; expire overdue claims in the same step (with an event),
        unless the policy skips the check.  Returns the claims expired.

        With ``response_ticks`` set (O14), a deferred request the runtime could answer that
        has waited that many ticks is answered first (served, or refused; under hard_demote
        a demotable claim in its way demoted first): no tick passes it by."""
        if self.response_ticks is not None:
            for r in self._deferred():
                if self.answerable(r.request_id) and r.waited >= self.response_ticks:
                    self.answer(r.request_id)
            for r in self._deferred():
                if self.answerable(r.request_id):
                    r.waited += 1
        return self.ledger.tick()

    def _deferred(self) -> List[RequestRecord]:
        return [r for r in self.requests.values() if r.status == RS.DEFERRED]

    def answerable(self, request_id: str) -> bool:
        """The runtime can answer the request now: it fits beside the protected claims, or
        it never will while they stand (infeasible)."""
        return not self.in_conflict(request_id) or self._infeasible(request_id)

    def answer(self, request_id: str) -> str:
        """Arbitrate a pending request until it has an answer (admitted or refused); a
        demotion is a step on the way.  Returns the last decision."""
        out = self.arbitrate(request_id)
        while out in ("deferred", "demoted"):
            out = self.arbitrate(request_id)
        return out

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
        r = RequestRecord(request_id, admit=admit_future_reuse, identity=identity, hashes=hs,
                          live_required=live, attention=attention, chunk_blocks=chunk_blocks,
                          window_blocks=window_blocks)
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
        return self.ledger.protected_resident

    def active_live(self) -> int:
        return self.ledger.active_live

    def blocking_claims(self) -> Tuple[str, ...]:
        """O8: exactly the claims whose protected blocks are resident in the pool."""
        return self.ledger.blocking_claims()

    def close_run(self) -> None:
        """End the run's telemetry with run_closed (an observer calls a trace without it
        incomplete)."""
        self.ledger.close_run()

    def lowering(self, mode) -> Lowering:
        """O7 capability honesty: what this runtime's primitive is worth for a mode."""
        return lowering_verdict(self.policy.primitive, parse_mode(mode))

    def feasibility(self, request_id: str) -> Feasibility:
        need = self._request(request_id).live_required
        return (Feasibility.INFEASIBLE if self.protected_resident() + need > self.usable
                else Feasibility.WAIT)

    def _infeasible(self, request_id: str) -> bool:
        return self.feasibility(request_id) == Feasibility.INFEASIBLE

    def defer(self, request_id: str) -> bool:
        r = self._request(request_id)
        if self.policy.arbitrates:
            waits = self.in_conflict(request_id)
        else:       # stock: it would evict any cached block, so only running requests count
            waits = r.live_required > self.usable - self.active_live()
        if r.status != RS.NONE or not waits:
            return False
        return self._hold_back(r, RS.DEFERRED)

    def refuse(self, request_id: str) -> bool:
        """Refuse a deferred request that cannot fit while the claims stand."""
        r = self._request(request_id)
        if not (self.policy.arbitrates and r.status == RS.DEFERRED
                and self.in_conflict(request_id)
                and self._infeasible(request_id)):
            return False
        return self._hold_back(r, RS.REFUSED)

    def _hold_back(self, r: RequestRecord, status: RS) -> bool:
        """The conflict event naming the blocking claims, then the deferral or refusal."""
        self.ledger.hold_back(r.request_id, status, live=r.live_required,
                              new_blocks=r.live_required,
                              infeasible=self._infeasible(r.request_id))
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
                n += max(0, obj.n_present - self._protected_k(obj))
            elif (pol.late_announce or pol.conflict_noadmit) and pressure:
                n += obj.n_present
        return n

    def _lost(self, b: int, h: Optional[int], reason: str) -> None:
        """Tell the ledger the block that carried h was taken (its hash is gone already):
        every object holding that content loses the position; content of no object is an
        ordinary victim."""
        if h is None:
            return
        if self.ledger.known_hash(h):
            self.ledger.evicted(h, b, reason)
        else:
            self.ledger.evicted_unclaimed(b, reason)

    def _take_free(self, t: int, reason: str) -> int:
        pool = self.pool
        h = pool.block_hash[pool.front(t)]
        b = pool.pop(t)
        self._lost(b, h, reason)
        return b

    def _take_pinned(self, obj: ObjectRecord, head: bool, limit: int, reason: str,
                     out: List[int]) -> None:
        ps = obj.positions()
        order = ps if head else list(reversed(ps))
        for p in order[:limit]:
            b = self._block_of(obj, p)
            h = self.pool.block_hash[b]
            extra = max(0, self.ledger.pins_on(b) - 1)
            self.pool.take(b)                # one pin's reference becomes the new owner's
            self.pool.ref[b] -= extra        # the pins of other objects sharing it go too
            self._lost(b, h, reason)
            out.append(b)

    def _gather(self, n: int, pressure: bool) -> List[int]:
        """n blocks for a new owner, in the runtime's order: free blocks first (unhashed at the
        front), then the LRU order of the queue, then whatever the policy lets it reach."""
        pol, pool = self.policy, self.pool
        out: List[int] = []
        for t in (0, 1):
            while len(out) < n and pool.free_count[t]:
                out.append(self._take_free(t, "lru"))
        if len(out) == n:
            return out
        for obj in self._overdue_pinned():
            if len(out) < n:
                self._take_pinned(obj, False, n - len(out), "overdue", out)
        if pol.preference_only:
            while len(out) < n and pool.free_count[2]:
                out.append(self._take_free(2, "lower_priority_exhausted"))
        for obj in self._objects_in_order():
            if len(out) >= n or not obj.pinned or not self._protecting(obj):
                continue
            if pol.count_protection:
                self._take_pinned(obj, True, min(n - len(out), obj.n_present
                                                 - self._protected_k(obj)),
                                  "count_surplus", out)
            elif (pol.late_announce or pol.conflict_noadmit) and pressure:
                self._take_pinned(obj, False, n - len(out), "pressure", out)
        assert len(out) == n, (len(out), n)
        return out

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
            self.ledger.conflict(request_id, live=0, new_blocks=r.live_required,
                                 infeasible=self._infeasible(request_id),
                                 action="serve_no_admit", named=())
        held = [self.pool.cache[h] for h in r.hashes[:hits]]
        for b in held:
            self.pool.touch(b)
        new = self._prefill(r, hits, need, pressure, admit)
        r.blocks = held + new
        victims = self.ledger.settle(f"admit:{request_id}", request_id)
        self.ledger.admitted(request_id, len(r.blocks), admit, hits,
                             attention=r.attention.value, peak_live_blocks=r.peak_live)
        return Admission(True, admit, tuple(victims))

    def _prefill(self, r: RequestRecord, hits: int, need: int, pressure: bool,
                 admit: bool) -> List[int]:
        """Compute the prompt's blocks after the hits, chunk by chunk.  Full attention keeps
        every chunk; a sliding window frees blocks that leave the window; recompute keeps
        only the current chunk.  Peak live is recorded; blocks are hashed if admitted."""
        if r.attention == Attention.FULL:
            blocks = self._gather(need, pressure)
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
                b = self._gather(1, pressure)[0]
                if admit:
                    self._store(b, r.hashes[pos])
                live.append(b)
                pos += 1
                peak = max(peak, len(live))
        r.peak_live = peak
        return live

    def _free_blocks(self, blocks: Sequence[int]) -> None:
        """Release blocks tail first; hashed ones join their objects' tier (or stay pinned);
        unhashed ones (never admitted for reuse) go to the front."""
        order = blocks[::-1]
        self.pool.release_all(order, [self._tier_of_hash(self.pool.block_hash[b])
                                      for b in order])

    def finish(self, request_id: str) -> bool:
        r = self._request(request_id)
        if r.status != RS.RUNNING:
            return False
        self._free_blocks(r.blocks)
        r.blocks = []
        return self.ledger.finished(request_id)

    # --- housekeeping eviction ------------------------------------------------------------------

    def evict_object_block(self, object_id: str) -> Optional[Victim]:
        """Evict one resident block of an object outside any allocation (the tail block; a
        block-counting runtime takes the head of a claim it counts).  None if not allowed.
        Every object holding that content loses it."""
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
                if obj.n_present - 1 < self._protected_k(obj):
                    return None
                head = True
            else:
                return None
        p = ps[0] if head else ps[-1]
        b = self._block_of(obj, p)
        h = pool.block_hash[b]
        pins = self.ledger.pins_on(b)
        if pool.ref[b] > pins:
            return None                      # in use by a running request
        if pins:
            pool.take(b)
            pool.ref[b] = 1                  # every pin on it goes with the block
            pool.release(b)
        else:
            pool.drop_hash(b)
        self._lost(b, h, "evict")
        victims = self.ledger.settle("evict")
        return next(v for v in victims if v.object_id == object_id)

    def evict_cached_block(self) -> Optional[Victim]:
        """Evict the least recently used ordinary cached block (claimed by nobody)."""
        pool = self.pool
        for b in pool.queue(0):
            h = pool.block_hash[b]
            if h is not None and not self.ledger.known_hash(h):
                pool.drop_hash(b)
                self._lost(b, h, "evict")
                return self.ledger.settle("evict")[0]
        return None

    # --- abstraction helpers ----------------------------------------------------------------------

    def ordinary_cached(self) -> int:
        """Hashed free blocks that belong to no registered object."""
        pool = self.pool
        return sum(1 for h, b in pool.cache.items()
                   if not self.ledger.known_hash(h) and pool.ref[b] == 0)
