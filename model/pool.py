"""The block pool, kept the way vLLM keeps it (refinement/VLLM-FACTS.md,
docs/CONTRACT.md section 2).

- Block 0 is the null block: permanently referenced, never handed out (usable = num_blocks-1).
- Reference counts: a block with any reference is out of the free queue and never evictable.
- The free queue doubles as the LRU evictor: allocation pops from its front; a popped block
  that still carries a hash is evicted (its hash leaves the prefix cache) at that moment.
- Freed hashed blocks go to the back, unhashed ones to the front (so never-used and
  no-admit blocks are reused first and cached prefixes last).
- Tiers: the queue is split into a few priority tiers popped in order (tier 0 first); tier 1
  holds blocks of soft claims, tier 2 what a preference-only runtime "protects".  Protection
  proper is a reference (`pin`), so it costs O(1) per block and no scan ever meets it.

Everything is arrays of ints indexed by block id: a 1,000,000-block pool is a handful of lists.
"""
from __future__ import annotations

from typing import Dict, List, Optional

NULL_BLOCK = 0
TIERS = 3


class PoolExhausted(RuntimeError):
    """No free block in the tiers asked for."""


class BlockPool:
    def __init__(self, num_blocks: int, tiers: int = TIERS):
        if num_blocks < 2:
            raise ValueError("a pool needs the null block and at least one usable block")
        n = num_blocks
        self.num_blocks = n
        self.ref: List[int] = [0] * n
        self.block_hash: List[Optional[int]] = [None] * n
        self.tier: List[int] = [-1] * n          # free-queue tier, -1 when not queued
        # doubly linked lists over block ids; ids n + 2t / n + 2t + 1 are tier t's sentinels
        self._next: List[int] = [-1] * (n + 2 * tiers)
        self._prev: List[int] = [-1] * (n + 2 * tiers)
        self._head = [n + 2 * t for t in range(tiers)]
        self._tail = [n + 2 * t + 1 for t in range(tiers)]
        self.free_count: List[int] = [0] * tiers
        self.unhashed_free = 0
        self.cache: Dict[int, int] = {}          # block hash -> block id
        for t in range(tiers):
            self._next[self._head[t]] = self._tail[t]
            self._prev[self._tail[t]] = self._head[t]
        self.ref[NULL_BLOCK] = 1
        # all usable blocks, in id order, in tier 0 (built in one go: no per-block calls)
        ids = list(range(1, n))
        h, tl = self._head[0], self._tail[0]
        chain = [h] + ids + [tl]
        for a, b in zip(chain, chain[1:]):
            self._next[a] = b
            self._prev[b] = a
        for b in ids:
            self.tier[b] = 0
        self.free_count[0] = n - 1
        self.unhashed_free = n - 1

    @property
    def usable(self) -> int:
        return self.num_blocks - 1

    # --- queue primitives (O(1)) --------------------------------------------------------------

    def _unlink(self, b: int) -> None:
        t = self.tier[b]
        p, q = self._prev[b], self._next[b]
        self._next[p] = q
        self._prev[q] = p
        self.tier[b] = -1
        self.free_count[t] -= 1
        if self.block_hash[b] is None:
            self.unhashed_free -= 1

    def _link_after(self, a: int, b: int, t: int) -> None:
        q = self._next[a]
        self._next[a] = b
        self._prev[b] = a
        self._next[b] = q
        self._prev[q] = b
        self.tier[b] = t
        self.free_count[t] += 1
        if self.block_hash[b] is None:
            self.unhashed_free += 1

    def _enqueue(self, b: int, t: int) -> None:
        """Unhashed blocks to the front of tier 0, hashed ones to the back of tier t."""
        if self.block_hash[b] is None:
            self._link_after(self._head[0], b, 0)
        else:
            self._link_after(self._prev[self._tail[t]], b, t)

    def front(self, t: int) -> int:
        """The block tier t would hand out next, or -1."""
        b = self._next[self._head[t]]
        return -1 if b == self._tail[t] else b

    def queue(self, t: int) -> List[int]:
        """Tier t front to back (diagnostics and tests; O(length))."""
        out, b = [], self._next[self._head[t]]
        while b != self._tail[t]:
            out.append(b)
            b = self._next[b]
        return out

    def hashed_free(self, tiers=(0,)) -> int:
        return sum(self.free_count[t] for t in tiers) - (self.unhashed_free if 0 in tiers else 0)

    # --- block operations -----------------------------------------------------------------------

    def pop(self, t: int) -> int:
        """Take the front block of tier t for a new owner (ref 1).  The caller reads its hash
        first when it needs to know what is being evicted; the hash is dropped here."""
        b = self._next[self._head[t]]
        if b == self._tail[t]:
            raise PoolExhausted(f"tier {t} is empty")
        self._unlink(b)
        self.drop_hash(b)
        self.ref[b] = 1
        return b

    def take(self, b: int) -> None:
        """A specific block leaves its current holder for a new owner: a free block is
        unlinked, a referenced one (a pin being broken) keeps its single reference."""
        if self.tier[b] >= 0:
            self._unlink(b)
            self.ref[b] = 1
        self.drop_hash(b)

    def touch(self, b: int) -> None:
        """Take a reference (a cache hit, or a pin): the block leaves the free queue."""
        if self.tier[b] >= 0:
            self._unlink(b)
        self.ref[b] += 1

    def release(self, b: int, t: int = 0) -> None:
        """Drop a reference; at zero the block re-enters the queue (tier t if hashed)."""
        self.ref[b] -= 1
        if self.ref[b] == 0:
            self._enqueue(b, t)

    def release_all(self, blocks, tiers) -> None:
        """Drop a reference on each block, given tail first (as vLLM frees a request):
        hashed blocks that reach zero are appended to the back of their tier in that order,
        unhashed ones are prepended to the front as a group, in that same order."""
        front = []
        for b, t in zip(blocks, tiers):
            self.ref[b] -= 1
            if self.ref[b] == 0:
                if self.block_hash[b] is None:
                    front.append(b)
                else:
                    self._link_after(self._prev[self._tail[t]], b, t)
        for b in reversed(front):
            self._link_after(self._head[0], b, 0)

    def move(self, b: int, t: int) -> None:
        """A free block changes tier, going to the back of its new tier."""
        self._unlink(b)
        self._enqueue(b, t)

    def set_hash(self, b: int, h: int) -> None:
        self.block_hash[b] = h
        self.cache[h] = b

    def drop_hash(self, b: int) -> Optional[int]:
        """Evict block b from the prefix cache; a queued block moves to the front (unhashed)."""
        h = self.block_hash[b]
        if h is None:
            return None
        if self.cache.get(h) == b:
            del self.cache[h]
        t = self.tier[b]
        if t >= 0:
            self._unlink(b)
            self.block_hash[b] = None
            self._link_after(self._head[0], b, 0)
        else:
            self.block_hash[b] = None
        return h
