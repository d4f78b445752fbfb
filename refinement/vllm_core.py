"""Drive vLLM's own KVCacheManager and BlockPool offline, in the contract's vocabulary.

No model and no config: a ``KVCacheConfig`` with one full-attention group of
``num_blocks`` blocks (block 0 is vLLM's null block, so ``num_blocks - 1`` are usable),
block size 16, prefix caching on and KV cache events on.

Operations (all on the real pool):

- ``materialize(object_id, n_blocks, salt=None)``: a request whose prompt is the object's
  deterministic ``n_blocks * block_size`` token ids is allocated (hitting whatever of it is
  already cached) and then freed, so its full blocks stay cached, tail first in the free
  queue, as after any finished request.
- ``admit(request_id, n_blocks, admit_future_reuse=True, prefix_object=None)``: allocate
  live blocks for a fresh prompt of ``n_blocks`` blocks (optionally starting with the
  first blocks of a materialized object, to model a hit). The request stays live until
  ``finish``.
- ``finish(request_id)``: free the request's blocks as vLLM does when it finishes.
- ``observe()``: a ``PoolSnapshot`` read from the pool (see ``snapshot_pool``).

How "no-admit" (deny future reuse) maps onto vLLM: ``admit_future_reuse=False`` allocates
the same live blocks through ``allocate_slots(..., delay_cache_blocks=True)``, vLLM's own
switch for "do not enter these blocks in the prefix cache". The blocks are never hashed:
no ``BlockStored`` event, no later hit, and when the request finishes they go to the
*front* of the free queue (vLLM's LIFO reuse of unhashed blocks). The request still reads
cached prefix blocks and still needs all its live blocks: no-admit is not live bounding.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from kvclaims.refinement import vllm_adapter as va

BLOCK_SIZE = 16
# Token ids are drawn from 1 .. VOCAB_SIZE - 1 so the same prompts run on the tiny
# engine model (vocabulary 1000).
VOCAB_SIZE = 1000


def deterministic_token_ids(namespace: str, name: str, n_tokens: int) -> list[int]:
    """``n_tokens`` pseudo-random token ids fixed by (namespace, name)."""
    seed = int.from_bytes(hashlib.sha256(f"{namespace}:{name}".encode()).digest()[:8], "big")
    rng = random.Random(seed)
    return [rng.randrange(1, VOCAB_SIZE) for _ in range(n_tokens)]


def object_token_ids(object_id: str, n_blocks: int, block_size: int = BLOCK_SIZE) -> list[int]:
    """The prompt that materializes ``object_id``: ``n_blocks`` full blocks."""
    return deterministic_token_ids("object", object_id, n_blocks * block_size)


def fresh_token_ids(request_id: str, n_blocks: int, block_size: int = BLOCK_SIZE) -> list[int]:
    """A prompt no object shares: ``n_blocks`` full blocks fixed by the request id."""
    return deterministic_token_ids("request", request_id, n_blocks * block_size)


# ----------------------------------------------------------------------------- snapshot


@dataclass(frozen=True)
class BlockState:
    block_id: int
    # hex of the prefix hash the block carries, in the form KV events use; None if unhashed
    block_hash: str | None
    ref_cnt: int
    in_free_queue: bool
    free_queue_position: int | None  # 0 = next block the pool hands out
    is_null: bool = False


@dataclass(frozen=True)
class ObjectState:
    object_id: str
    n_blocks: int
    # block id holding logical position p, or None when no pool block carries its hash
    block_ids: tuple[int | None, ...]

    @property
    def resident_positions(self) -> tuple[int, ...]:
        return tuple(p for p, b in enumerate(self.block_ids) if b is not None)

    @property
    def lost_positions(self) -> tuple[int, ...]:
        return tuple(p for p, b in enumerate(self.block_ids) if b is None)

    @property
    def leading_resident(self) -> int:
        """How many leading positions 0..k-1 are all resident."""
        k = 0
        while k < self.n_blocks and self.block_ids[k] is not None:
            k += 1
        return k


@dataclass(frozen=True)
class PoolEvent:
    kind: str  # "stored", "removed" or "cleared"
    block_hash: str | None
    object_id: str | None = None  # the materialized object this hash belongs to, if any
    position: int | None = None  # its logical position in that object


@dataclass(frozen=True)
class PoolSnapshot:
    num_blocks: int  # pool size including the null block
    null_block_id: int
    blocks: tuple[BlockState, ...]
    free_queue: tuple[int, ...]  # block ids in eviction order
    objects: Mapping[str, ObjectState]
    requests: Mapping[str, tuple[int, ...]]  # live request -> its block ids
    events: tuple[PoolEvent, ...]  # events since the previous observe()

    @property
    def usable_blocks(self) -> int:
        return self.num_blocks - 1

    @property
    def num_free(self) -> int:
        return len(self.free_queue)

    def removed_positions(self, object_id: str) -> list[int]:
        """Positions of ``object_id`` named by BlockRemoved events, in event order."""
        return [e.position for e in self.events
                if e.kind == "removed" and e.object_id == object_id and e.position is not None]


@dataclass
class _Object:
    object_id: str
    token_ids: list[int]
    hashes: list[bytes]  # prefix hash of logical position p
    salt: str | None = None


@dataclass
class ObjectRegistry:
    """Materialized objects and the prefix hashes of their logical positions."""

    objects: dict[str, _Object] = field(default_factory=dict)
    _by_hash: dict[bytes, tuple[str, int]] = field(default_factory=dict)
    _by_external: dict[Any, tuple[str, int]] = field(default_factory=dict)

    def add(self, object_id: str, token_ids: list[int], hashes: Iterable[bytes],
            salt: str | None) -> None:
        entry = _Object(object_id, list(token_ids), [bytes(h) for h in hashes], salt)
        self.objects[object_id] = entry
        for p, h in enumerate(entry.hashes):
            self._by_hash[h] = (object_id, p)
            self._by_external[va.external_block_hash(h)] = (object_id, p)

    def locate_external(self, external_hash: Any) -> tuple[str, int] | None:
        return self._by_external.get(external_hash)


def _hex(h: Any) -> str | None:
    if h is None:
        return None
    if isinstance(h, int):
        return format(h, "016x")
    return bytes(h).hex()


def convert_events(raw_events: Iterable[Any], registry: ObjectRegistry) -> list[PoolEvent]:
    """vLLM KV cache events -> PoolEvents, one per block hash, resolved to objects."""
    out: list[PoolEvent] = []
    for event in raw_events:
        kind = va.event_kind(event)
        hashes = getattr(event, "block_hashes", None)
        if not hashes:
            out.append(PoolEvent(kind, None))
            continue
        for h in hashes:
            where = registry.locate_external(h)
            out.append(PoolEvent(kind, _hex(h), *(where if where else (None, None))))
    return out


def snapshot_pool(block_pool: Any, registry: ObjectRegistry,
                  requests: Mapping[str, Iterable[int]],
                  events: Iterable[PoolEvent]) -> PoolSnapshot:
    """Read a ``PoolSnapshot`` from a real vLLM ``BlockPool``."""
    free_ids = va.free_queue_block_ids(block_pool)
    position = {b: i for i, b in enumerate(free_ids)}
    null_id = va.null_block_id(block_pool)
    blocks = []
    holder: dict[bytes, int] = {}
    for block in block_pool.blocks:
        h = va.pool_block_hash(block)
        if h is not None:
            holder.setdefault(h, block.block_id)
        blocks.append(BlockState(
            block_id=block.block_id,
            block_hash=None if h is None else _hex(va.external_block_hash(h)),
            ref_cnt=block.ref_cnt,
            in_free_queue=block.block_id in position,
            free_queue_position=position.get(block.block_id),
            is_null=block.block_id == null_id,
        ))
    objects = {
        oid: ObjectState(oid, len(o.hashes), tuple(holder.get(h) for h in o.hashes))
        for oid, o in registry.objects.items()
    }
    return PoolSnapshot(
        num_blocks=len(block_pool.blocks),
        null_block_id=null_id,
        blocks=tuple(blocks),
        free_queue=tuple(free_ids),
        objects=objects,
        requests={rid: tuple(ids) for rid, ids in requests.items()},
        events=tuple(events),
    )


# ------------------------------------------------------------------------------ driver


@dataclass(frozen=True)
class AdmitResult:
    request_id: str
    admitted: bool  # False: the pool could not hold it; nothing was allocated
    block_ids: tuple[int, ...]  # all blocks of the request, in logical order
    hit_blocks: int  # blocks taken from the prefix cache
    num_cached_tokens: int


class PoolObserver:
    """Observation shared by the core, Scheduler and engine drivers.

    Subclasses set ``manager`` (vLLM's KVCacheManager), ``block_pool``, ``registry``,
    ``block_size`` and ``_events`` (raw vLLM events in order), and say which request
    ids are live and under which id vLLM knows them (``_live_ids``).
    """

    manager: Any
    block_pool: Any
    registry: ObjectRegistry
    block_size: int
    num_blocks: int
    _events: list[Any]
    _unobserved: int = 0

    @property
    def usable_blocks(self) -> int:
        return self.num_blocks - 1

    def _live_ids(self) -> Mapping[str, str]:
        raise NotImplementedError

    def _prompt(self, request_id: str, n_blocks: int, prefix_object: str | None
                ) -> tuple[list[int], str | None]:
        """A fresh prompt, starting with ``prefix_object``'s blocks when one is named."""
        tokens = fresh_token_ids(request_id, n_blocks, self.block_size)
        if prefix_object is None:
            return tokens, None
        obj = self.registry.objects[prefix_object]
        k = min(len(obj.token_ids), len(tokens))
        tokens[:k] = obj.token_ids[:k]
        return tokens, obj.salt

    def _drain(self) -> None:
        # Events of frees done outside a scheduler step wait in the pool: collect them.
        self._events.extend(va.take_pool_events(self.manager))

    @property
    def event_log(self) -> list[PoolEvent]:
        """Every pool event so far, resolved against the objects known now."""
        self._drain()
        return convert_events(self._events, self.registry)

    def observe(self) -> PoolSnapshot:
        self._drain()
        new_events = convert_events(self._events[self._unobserved:], self.registry)
        self._unobserved = len(self._events)
        requests = {rid: va.allocated_block_ids(self.manager.get_blocks(internal))
                    for rid, internal in self._live_ids().items()}
        return snapshot_pool(self.block_pool, self.registry, requests, new_events)


class VllmCore(PoolObserver):
    """vLLM's KVCacheManager + BlockPool built offline and driven directly."""

    def __init__(self, num_blocks: int, block_size: int = BLOCK_SIZE,
                 max_model_len: int | None = None) -> None:
        if num_blocks < 2:
            raise ValueError("num_blocks includes the null block: it must be at least 2")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.max_model_len = max_model_len or num_blocks * block_size
        self.manager = va.make_kv_cache_manager(
            va.make_kv_cache_config(num_blocks, block_size),
            block_size=block_size, max_model_len=self.max_model_len,
            enable_caching=True, enable_kv_cache_events=True)
        self.block_pool = self.manager.block_pool
        self.registry = ObjectRegistry()
        self.live: dict[str, Any] = {}  # request id -> vLLM Request
        self._events: list[Any] = []

    def _live_ids(self) -> Mapping[str, str]:
        return {rid: rid for rid in self.live}

    def _run(self, request_id: str, token_ids: list[int], *, cache: bool,
             salt: str | None = None) -> tuple[Any, AdmitResult]:
        if request_id in self.live:
            raise ValueError(f"request {request_id!r} is already live")
        req = va.make_request(request_id, token_ids, block_size=self.block_size,
                              cache_salt=salt)
        hit, n_hit_tokens = va.get_computed_blocks(self.manager, req)
        new = va.allocate_slots(self.manager, req, req.num_tokens - n_hit_tokens,
                                n_hit_tokens, hit, cache=cache)
        self._drain()
        if new is None:
            return req, AdmitResult(request_id, False, (), 0, 0)
        req.num_computed_tokens = req.num_tokens
        ids = tuple(va.allocated_block_ids(self.manager.get_blocks(request_id)))
        return req, AdmitResult(request_id, True, ids, n_hit_tokens // self.block_size,
                                n_hit_tokens)

    def materialize(self, object_id: str, n_blocks: int, salt: str | None = None
                    ) -> AdmitResult:
        """Compute the object's prefix as a request that finishes: its blocks stay cached."""
        tokens = object_token_ids(object_id, n_blocks, self.block_size)
        rid = f"materialize:{object_id}"
        req, result = self._run(rid, tokens, cache=True, salt=salt)
        self.registry.add(object_id, tokens, req.block_hashes, salt)
        if result.admitted:
            self.manager.free(req)
            self._drain()
        return result

    def admit(self, request_id: str, n_blocks: int, admit_future_reuse: bool = True,
              prefix_object: str | None = None) -> AdmitResult:
        """Allocate live blocks for a prompt of ``n_blocks`` full blocks.

        With ``prefix_object`` the prompt starts with that object's blocks (as many as fit
        in ``n_blocks``) and continues with fresh tokens.
        """
        tokens, salt = self._prompt(request_id, n_blocks, prefix_object)
        req, result = self._run(request_id, tokens, cache=admit_future_reuse, salt=salt)
        if result.admitted:
            self.live[request_id] = req
        return result

    def finish(self, request_id: str) -> None:
        """Free a live request's blocks (tail first), as vLLM does when it finishes."""
        req = self.live.pop(request_id)
        self.manager.free(req)
        self._drain()
