"""Live KV of a chunked prefill under each attention mode (docs/CONTRACT.md section 2, O2).

Full attention keeps every chunk (live = the sum of the chunks); a sliding window keeps the
last `window` blocks; recomputing between chunks keeps only the chunk being computed.
Denying future reuse (no-admit) appears nowhere here: it does not bound live KV."""
from __future__ import annotations

from enum import Enum
from typing import List, Optional


class Attention(str, Enum):
    FULL = "full"
    SLIDING_WINDOW = "sliding_window"
    RECOMPUTE = "recompute_between_chunks"


def chunks(n_blocks: int, chunk_blocks: Optional[int]) -> List[int]:
    """Chunk sizes of a prefill of n_blocks (one chunk when chunk_blocks is None)."""
    if chunk_blocks is None or chunk_blocks >= n_blocks:
        return [n_blocks]
    if chunk_blocks <= 0:
        raise ValueError("chunk_blocks must be > 0")
    out = [chunk_blocks] * (n_blocks // chunk_blocks)
    if n_blocks % chunk_blocks:
        out.append(n_blocks % chunk_blocks)
    return out


def live_blocks_required(n_blocks: int, attention: Attention = Attention.FULL,
                         chunk_blocks: Optional[int] = None,
                         window_blocks: Optional[int] = None) -> int:
    """Peak live blocks the prefill holds."""
    cs = chunks(n_blocks, chunk_blocks)
    if attention == Attention.FULL:
        return sum(cs)
    if attention == Attention.SLIDING_WINDOW:
        if window_blocks is None or window_blocks <= 0:
            raise ValueError("sliding window attention needs window_blocks > 0")
        return min(n_blocks, window_blocks)
    return max(cs)
