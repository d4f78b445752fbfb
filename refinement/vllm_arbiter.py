"""The resident-claim arbiter over vLLM's own BlockPool: the project's ClaimLedger
(kvclaims.model.ledger) with a residency read off vLLM's pool.

- **Residency.** A position of an object is resident when vLLM's hash map has a block for its
  hash (``cached_block``, O(1)). Two hooks on the pool (``vllm_adapter.install_pool_hooks``)
  tell the ledger what happened as it happens: a block entered the prefix cache (``stored``;
  a block of a protected object is pinned that very moment) and a cached block was evicted to
  be handed out again (``evicted``; every object sharing that content sees the loss).
- **Pinning.** A protected object's resident blocks each carry one extra reference (vLLM's
  own ``touch``): a referenced block is out of the free queue, so no allocation can evict it.
  Unpinning drops the references tail first, after the event that ends the protection (O4).
- **Conflicts.** ``in_conflict(need)``: the request needs more new blocks than vLLM can
  allocate without touching a pinned block (``get_num_free_blocks``, O(1));
  ``infeasible(need)``: protected resident + need > usable, i.e. it cannot fit even once every
  running request has finished.

Telemetry is the ledger's (same schema and event names as the MicroRuntime). Counters
(accepted, rejected, materialized, harmed, demoted, expired, released, deferred, refused,
bad_input) are in ``counters`` and exported as the Prometheus counter
``kvclaims_claim_events_total{event=...}`` in the process that runs the scheduler.
"""
from __future__ import annotations

from typing import Any, Hashable, List, Optional

from kvclaims.model.ledger import ClaimLedger, ObjectRec, RequestRec  # noqa: F401
from kvclaims.model.telemetry import Telemetry
from kvclaims.model.tenancy import ClaimLimits
from kvclaims.spec.vocab import RequestStatus as RS

from . import vllm_adapter as va


class VllmResidency:
    """The ledger's view of one vLLM BlockPool (single KV-cache group)."""

    def __init__(self, block_pool: Any):
        self.pool = block_pool
        self.usable = va.usable_pool_blocks(block_pool)

    def block_of(self, block_hash: Hashable) -> Any:
        return va.cached_block(self.pool, block_hash)

    def free_blocks(self) -> int:
        return va.num_free_blocks(self.pool)

    def pin(self, blocks: List[Any]) -> None:
        va.pin_blocks(self.pool, blocks)

    def unpin(self, blocks_tail_first: List[Any]) -> None:
        va.unpin_blocks(self.pool, blocks_tail_first)


class ClaimArbiter(ClaimLedger):
    def __init__(self, block_pool: Any, *, policy: Any = "hard_refuse",
                 cap: Optional[int] = None, telemetry: Optional[Telemetry] = None,
                 block_size: int = 16, max_duration: Optional[int] = None,
                 keep_ended: int = 4096, headroom: Optional[int] = None,
                 limits: Optional[ClaimLimits] = None):
        super().__init__(VllmResidency(block_pool), policy=policy, cap=cap,
                         telemetry=telemetry, max_duration=max_duration,
                         keep_ended=keep_ended, prometheus=True, headroom=headroom,
                         limits=limits)
        self.pool = block_pool
        self.block_size = block_size
        va.install_pool_hooks(block_pool, self._on_stored, self._on_evict)

    def _on_stored(self, block: Any, block_hash: bytes) -> None:
        self.stored(block_hash)

    def _on_evict(self, block: Any, block_hash: bytes) -> None:
        self.evicted(block_hash, block.block_id, "lru")

    def resident_positions(self, obj: ObjectRec) -> List[bool]:
        return [bool(x) for x in obj.present]

    # --- conflicts ----------------------------------------------------------------------------

    def free_blocks(self) -> int:
        return self.residency.free_blocks()

    def in_conflict(self, need: int) -> bool:
        return need > self.free_blocks()

    def infeasible(self, need: int) -> bool:
        return self.protected_resident + need > self.usable

    def _hold(self, request_id: str, need: int, status: RS, live: Optional[int],
              peak_new: Optional[int], reason: Optional[str] = None) -> RequestRec:
        """The request's record, returned: a refused one may already be retired from
        ``requests`` (keep_ended = 0)."""
        peak_new = need if peak_new is None else peak_new
        return self.hold_back(request_id, status, live=need if live is None else live,
                              new_blocks=peak_new, infeasible=self.infeasible(peak_new),
                              reason=reason)

    def defer(self, request_id: str, need: int, live: Optional[int] = None,
              peak_new: Optional[int] = None) -> bool:
        """Defer a pending request that needs more new blocks than vLLM can allocate
        without touching a pinned block. ``live``: the blocks it holds at its peak;
        ``peak_new``: those of them not already protected resident (default ``need``)."""
        r = self.request(request_id)
        if r.status != RS.NONE or not self.in_conflict(need):
            return False
        self._hold(request_id, need, RS.DEFERRED, live, peak_new)
        return True

    def refuse(self, request_id: str, need: int, live: Optional[int] = None,
               peak_new: Optional[int] = None,
               reason: Optional[str] = None) -> Optional[RequestRec]:
        """Refuse a deferred request still in conflict: the caller has judged it infeasible
        or past its bounded wait, and says which in ``reason``. Without a reason only an
        infeasible one is refused (the spec's refuse). Its record when refused, else None."""
        r = self.request(request_id)
        peak = need if peak_new is None else peak_new
        if not (r.status == RS.DEFERRED and self.in_conflict(need)
                and (reason is not None or self.infeasible(peak))):
            return None
        return self._hold(request_id, need, RS.REFUSED, live, peak_new, reason)

    def demote(self, claim_id: str, request_id: str, need: int, force: bool = False) -> bool:
        """Demote a claim in a pending request's way: it is in conflict now, or (``force``,
        the scheduler's judgement) its peak cannot fit beside the claims."""
        if not (force or self.in_conflict(need)):
            return False
        return super().demote(claim_id, request_id)
