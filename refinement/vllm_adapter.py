"""Version adapter: the one place that knows which vLLM release is installed.

Everything in the vLLM layer (``vllm_core``, ``vllm_sched``, ``vllm_engine``) calls vLLM's
KV-cache internals through the functions below, never directly. Each function absorbs one
thing that moved between vLLM releases:

- ``get_computed_blocks``: ``KVCacheManager.get_computed_blocks`` returns
  ``(blocks, num_computed_tokens)`` in older releases and
  ``(blocks, num_computed_tokens, shared_prefix_boundary)`` in 0.32.
- ``make_kv_cache_manager``: the constructor keywords (``scheduler_block_size`` and
  ``hash_block_size`` exist only in recent releases).
- ``allocate_slots``: the keyword names for the prefix hit and for "do not cache".
- ``free_queue_block_ids``: iteration of the free queue in eviction order.
- ``make_kv_cache_config``: building a one-group full-attention ``KVCacheConfig``.
- ``block_hasher``: ``init_none_hash`` (once per process) and the request block hasher.
- ``make_request``: building a ``Request`` from token ids.
- ``external_block_hash``: the form a block hash takes inside ``BlockStored`` /
  ``BlockRemoved`` events (bytes, or a 64-bit int when
  ``VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES`` is on, the 0.32 default).
- ``allow_cpu_block_size``: the CPU attention backend's declared kernel block sizes.
- ``engine_scheduler``: where the in-process engine keeps its scheduler.

Importing this module imports vLLM (about 7 s): import it once per process.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Iterable

import torch
import vllm
from packaging.version import Version
from vllm.sampling_params import SamplingParams
from vllm.v1.core import kv_cache_utils
from vllm.v1.core.kv_cache_manager import KVCacheManager
from vllm.v1.kv_cache_interface import (
    FullAttentionSpec,
    KVCacheConfig,
    KVCacheGroupSpec,
)
from vllm.v1.request import Request

try:  # 0.10+ keeps the hash functions here
    from vllm.utils.hashing import sha256 as _sha256
except ImportError:  # pragma: no cover - older releases
    from vllm.utils import sha256 as _sha256  # type: ignore[no-redef]

VLLM_VERSION: str = vllm.__version__

# The layer name we give the single KV-cache group of the offline configs.
LAYER_NAME = "model.layers.0.self_attn.attn"


def version_tuple(version: str = VLLM_VERSION) -> tuple[int, ...]:
    """``"0.32.0"`` -> ``(0, 32, 0)``: the release part as PEP 440 reads it (pre-release, dev
    and local suffixes such as ``rc1`` or ``+cpu`` are not part of it)."""
    return tuple(Version(version).release)


def _accepted(fn: Callable[..., Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """The subset of ``wanted`` keyword arguments that ``fn`` accepts."""
    any_kw, params = _parameters(fn)
    if any_kw:
        return dict(wanted)
    return {k: v for k, v in wanted.items() if k in params}


@functools.lru_cache(maxsize=None)
def _parameters(fn: Callable[..., Any]) -> tuple[bool, frozenset[str]]:
    """(takes **kwargs, parameter names) of ``fn``: read once per function, since
    inspect.signature costs more than the Request it helps build (one per spec step)."""
    params = inspect.signature(fn).parameters
    return (any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()),
            frozenset(params))


# --------------------------------------------------------------------------- hashing

_hashing_ready = False


def block_hasher(block_size: int) -> Callable[[Request], list[bytes]]:
    """The request block hasher vLLM's engine uses (sha256 chain over full blocks).

    Calls ``init_none_hash`` the first time; later calls reuse the same seed, so every
    hash computed in this process is comparable.
    """
    global _hashing_ready
    if not _hashing_ready:
        kv_cache_utils.init_none_hash(_sha256)
        _hashing_ready = True
    return kv_cache_utils.get_request_block_hasher(block_size, _sha256)


def external_block_hash(block_hash: bytes) -> Any:
    """A request block hash as it appears inside KV cache events."""
    convert = getattr(kv_cache_utils, "maybe_convert_block_hash", None)
    return block_hash if convert is None else convert(block_hash)


def pool_block_hash(block: Any) -> bytes | None:
    """The prefix hash a pool block carries (without the KV-cache group id), or None."""
    key = block.block_hash
    if key is None:
        return None
    strip = getattr(kv_cache_utils, "get_block_hash", None)
    if strip is not None:
        return bytes(strip(key))
    return bytes(getattr(key, "block_hash", key))  # pragma: no cover - older tuple keys


# ---------------------------------------------------------------- configs and managers


def full_attention_spec(block_size: int, num_kv_heads: int = 1, head_size: int = 32,
                        dtype: torch.dtype = torch.float32) -> FullAttentionSpec:
    return FullAttentionSpec(**_accepted(FullAttentionSpec, dict(
        block_size=block_size, num_kv_heads=num_kv_heads, head_size=head_size,
        dtype=dtype)))


def make_kv_cache_config(num_blocks: int, block_size: int,
                         layer_names: Iterable[str] = (LAYER_NAME,)) -> KVCacheConfig:
    """One full-attention KV-cache group, ``num_blocks`` blocks including the null block."""
    group = KVCacheGroupSpec(list(layer_names), full_attention_spec(block_size))
    return KVCacheConfig(num_blocks=num_blocks, kv_cache_tensors=[], kv_cache_groups=[group])


def make_kv_cache_manager(kv_cache_config: KVCacheConfig, *, block_size: int,
                          max_model_len: int, enable_caching: bool = True,
                          enable_kv_cache_events: bool = True) -> KVCacheManager:
    wanted = dict(
        kv_cache_config=kv_cache_config,
        max_model_len=max_model_len,
        scheduler_block_size=block_size,
        hash_block_size=block_size,
        enable_caching=enable_caching,
        enable_kv_cache_events=enable_kv_cache_events,
    )
    return KVCacheManager(**_accepted(KVCacheManager.__init__, wanted))


def get_computed_blocks(manager: KVCacheManager, request: Request) -> tuple[Any, int]:
    """The prefix-cache hit of ``request``: (blocks, number of computed tokens)."""
    result = manager.get_computed_blocks(request)
    return result[0], int(result[1])


def allocate_slots(manager: KVCacheManager, request: Request, num_new_tokens: int,
                   num_computed_tokens: int, computed_blocks: Any, *,
                   cache: bool = True) -> Any | None:
    """Allocate slots for ``num_new_tokens`` after a prefix hit; None when it does not fit.

    ``cache=False`` allocates the same live blocks but does not enter them in the prefix
    cache (vLLM's ``delay_cache_blocks``): no ``BlockStored`` event, no later hit, and on
    free they go to the front of the free queue.
    """
    # The class's signature: an instance may carry a wrapper (see install_no_admit).
    params = inspect.signature(type(manager).allocate_slots).parameters
    kwargs: dict[str, Any] = {}
    hit_name = ("num_new_computed_tokens" if "num_new_computed_tokens" in params
                else "num_computed_tokens")
    kwargs[hit_name] = num_computed_tokens
    kwargs["new_computed_blocks"] = computed_blocks
    if not cache:
        if "delay_cache_blocks" not in params:  # pragma: no cover - older releases
            raise NotImplementedError(
                f"vLLM {VLLM_VERSION}: allocate_slots has no delay_cache_blocks")
        kwargs["delay_cache_blocks"] = True
    return manager.allocate_slots(request, num_new_tokens, **kwargs)


def allocated_block_ids(blocks: Any) -> list[int]:
    """Block ids of a ``KVCacheBlocks`` (single group)."""
    ids = blocks.get_block_ids()
    return list(ids[0]) if ids and isinstance(ids[0], (list, tuple)) else list(ids)


def free_queue_block_ids(block_pool: Any) -> list[int]:
    """Block ids in the free queue, in eviction order (first = next to be reused)."""
    queue = block_pool.free_block_queue
    if hasattr(queue, "get_all_free_blocks"):
        return [b.block_id for b in queue.get_all_free_blocks()]
    ids = []  # pragma: no cover - walk the linked list by hand
    node = queue.fake_free_list_head.next_free_block
    while node is not None and node is not queue.fake_free_list_tail:
        ids.append(node.block_id)
        node = node.next_free_block
    return ids


def null_block_id(block_pool: Any) -> int:
    return block_pool.null_block.block_id


def take_pool_events(manager: KVCacheManager) -> list[Any]:
    return list(manager.take_events())


def event_kind(event: Any) -> str:
    """``stored``, ``removed``, ``cleared`` or the class name for anything else."""
    return {"BlockStored": "stored", "BlockRemoved": "removed",
            "AllBlocksCleared": "cleared"}.get(type(event).__name__, type(event).__name__)


# ----------------------------------------------------------------------------- requests


def sampling_params(max_tokens: int = 1, extra_args: dict[str, Any] | None = None,
                    ) -> SamplingParams:
    kwargs: dict[str, Any] = dict(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
    if extra_args:
        kwargs["extra_args"] = dict(extra_args)
    return SamplingParams(**kwargs)


def make_request(request_id: str, token_ids: list[int], *, block_size: int,
                 max_tokens: int = 1, cache_salt: str | None = None,
                 extra_args: dict[str, Any] | None = None) -> Request:
    wanted = dict(
        request_id=request_id,
        prompt_token_ids=list(token_ids),
        sampling_params=sampling_params(max_tokens, extra_args),
        pooling_params=None,
        eos_token_id=None,
        cache_salt=cache_salt,
        block_hasher=block_hasher(block_size),
    )
    return Request(**_accepted(Request.__init__, wanted))


# ------------------------------------------------------------------------------ engine


def allow_cpu_block_size(block_size: int) -> bool:
    """Declare ``block_size`` supported by vLLM's CPU attention backend, in this process.

    vLLM 0.32's CPU backend declares kernel block sizes that are multiples of 32; its
    kernels also have a 16-token path (``vec16``). Returns True when the declaration was
    changed (or already allowed it); False when this vLLM has no such backend.
    """
    try:
        from vllm.v1.attention.backend import MultipleOf
        from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend
    except ImportError:  # pragma: no cover
        return False
    declared = CPUAttentionBackend.get_supported_kernel_block_sizes()
    if any((isinstance(d, int) and d == block_size)
           or (isinstance(d, MultipleOf) and block_size % d.base == 0) for d in declared):
        return True
    widened = list(declared) + [MultipleOf(block_size)]
    CPUAttentionBackend.get_supported_kernel_block_sizes = staticmethod(
        lambda kv_cache_spec=None: list(widened))
    return True


def engine_scheduler(llm: Any) -> Any:
    """The scheduler of an in-process ``vllm.LLM`` (V1 engine, no multiprocessing)."""
    core = llm.llm_engine.engine_core
    inner = getattr(core, "engine_core", None)
    if inner is None:
        raise RuntimeError("the engine is not in-process: set "
                           "VLLM_ENABLE_V1_MULTIPROCESSING=0 before building vllm.LLM")
    return inner.scheduler


def scheduler_kv_cache_manager(scheduler: Any) -> KVCacheManager:
    return scheduler.kv_cache_manager


def install_event_recorder(scheduler: Any) -> list[Any]:
    """Replace the scheduler's KV-event publisher by one that keeps every event here.

    The scheduler drains ``take_events()`` itself at the end of each step and hands the
    batch to its publisher; the returned list receives those events in order.
    """
    recorded: list[Any] = []

    class _Recorder:
        def publish(self, batch: Any) -> None:
            recorded.extend(batch.events)

        def shutdown(self) -> None:
            return None

    scheduler.kv_event_publisher = _Recorder()
    return recorded


def install_no_admit(manager: KVCacheManager, denies_reuse: Callable[[Request], bool]
                     ) -> None:
    """Make ``manager`` allocate without caching for requests ``denies_reuse`` selects.

    This is how "write no-admit" (deny future reuse) is lowered onto a stock scheduler:
    the request's live blocks are allocated exactly as usual, but vLLM's own
    ``delay_cache_blocks`` keeps them out of the prefix cache, so they are never hashed,
    never hit, emit no ``BlockStored`` and return to the front of the free queue.
    """
    original = manager.allocate_slots

    def allocate_slots(request: Request, *args: Any, **kwargs: Any) -> Any:
        if denies_reuse(request):
            kwargs["delay_cache_blocks"] = True
        return original(request, *args, **kwargs)

    manager.allocate_slots = allocate_slots  # type: ignore[method-assign]


def denies_future_reuse(request: Request) -> bool:
    """True when the request's ``extra_args`` carry ``kvclaims_admit_future_reuse=False``
    (or 0: the OpenAI server's ``vllm_xargs`` turns JSON ``false`` into 0)."""
    params = getattr(request, "sampling_params", None)
    extra = getattr(params, "extra_args", None) or {}
    value = extra.get(ADMIT_FUTURE_REUSE_KEY, True)
    return value is False or (type(value) in (int, float) and value == 0)


ADMIT_FUTURE_REUSE_KEY = "kvclaims_admit_future_reuse"


# ------------------------------------------------------------------- claim arbiter hooks
# Everything the claim arbiter (vllm_arbiter.py) touches inside vLLM goes through here.


def usable_pool_blocks(block_pool: Any) -> int:
    """Allocatable blocks of a pool (all but the null block)."""
    return int(block_pool.num_gpu_blocks) - 1


def num_free_blocks(block_pool: Any) -> int:
    """Blocks an allocation can take now (never used, freed, evictable cached): O(1)."""
    return int(block_pool.get_num_free_blocks())


def cached_block(block_pool: Any, block_hash: bytes) -> Any | None:
    """The pool block carrying ``block_hash`` (single KV-cache group), or None: O(1)."""
    got = block_pool.get_cached_block(block_hash, [0])
    return got[0] if got else None


def pin_blocks(block_pool: Any, blocks: list[Any]) -> None:
    """Take one reference on each block, as a prefix hit does: a block with a reference
    is out of the free queue (an O(1) unlink per block) and never an eviction victim."""
    block_pool.touch(blocks)


def unpin_blocks(block_pool: Any, blocks_tail_first: list[Any]) -> None:
    """Drop the references ``pin_blocks`` took. Blocks reaching zero rejoin the free
    queue in the order given (first = evicted first), as a finished request's do."""
    block_pool.free_blocks(blocks_tail_first)


def _block_hashes(block_pool: Any, block: Any) -> list[bytes]:
    """Every prefix hash a pool block carries (its own, and any moved onto it)."""
    keys = [block.block_hash] if block.block_hash is not None else []
    keys.extend(getattr(block_pool, "cached_block_hashes_by_block", {}).get(block.block_id, ()))
    strip = getattr(kv_cache_utils, "get_block_hash", None)
    return [bytes(strip(k)) if strip is not None else bytes(k) for k in keys]


def install_pool_hooks(block_pool: Any, on_stored: Callable[[Any, bytes], None],
                       on_evict: Callable[[Any, bytes], None]) -> None:
    """Call ``on_stored(block, hash)`` when a block enters the prefix cache under a hash, and
    ``on_evict(block, hash)`` for each hash a cached block loses when the pool evicts it to
    hand it out again. vLLM enters every cached hash through ``_insert_block_hash`` and
    calls ``_maybe_evict_cached_block`` on every block it pops from the free queue (and on
    ``evict_blocks``): one Python call per block. A later install replaces, never stacks."""
    evict0 = (getattr(block_pool, "_kvclaims_original_evict", None)
              or block_pool._maybe_evict_cached_block)
    insert0 = (getattr(block_pool, "_kvclaims_original_insert", None)
               or block_pool._insert_block_hash)
    block_pool._kvclaims_original_evict = evict0
    block_pool._kvclaims_original_insert = insert0
    strip = getattr(kv_cache_utils, "get_block_hash", None)

    def evict(block: Any) -> bool:
        if block.block_hash is None:     # never cached (a second hash needs a first)
            return evict0(block)
        hashes = _block_hashes(block_pool, block)
        evicted = evict0(block)
        if evicted:
            for h in hashes:
                on_evict(block, h)
        return evicted

    def insert(key: Any, block: Any, num_tokens: Any) -> None:
        insert0(key, block, num_tokens)
        on_stored(block, bytes(strip(key)) if strip is not None else bytes(key))

    block_pool._maybe_evict_cached_block = evict
    block_pool._insert_block_hash = insert


def request_block_hashes(request: Request) -> list[bytes]:
    """The prefix hash of each full block of a request's prompt, in logical order."""
    return [bytes(h) for h in request.block_hashes]


def request_extra_args(request: Request) -> dict[str, Any]:
    params = getattr(request, "sampling_params", None)
    extra = getattr(params, "extra_args", None)
    return extra if isinstance(extra, dict) else {}


def request_peak_blocks(request: Request, block_size: int) -> int:
    """Blocks a request holds once the KV of its last token is written: its prompt plus
    ``max_tokens - 1`` generated tokens (the last sampled token's KV is never computed)."""
    prompt = int(getattr(request, "num_prompt_tokens", 0) or request.num_tokens)
    extra = max(0, int(getattr(request, "max_tokens", 1) or 1) - 1)
    return -(-(prompt + extra) // block_size)


def request_cache_salt(request: Request) -> str | None:
    return getattr(request, "cache_salt", None)


def set_cache_salt(request: Request, salt: str) -> None:
    """Hash a request (not yet queued) under another cache salt: vLLM folds the salt into
    its first block's hash, and every later block hash chains on it, so all are redone by
    the request's own block hasher."""
    request.cache_salt = salt
    request.block_hashes = []
    request.update_block_hashes()


def request_block_ids(manager: KVCacheManager, request_id: str) -> list[int]:
    return allocated_block_ids(manager.get_blocks(request_id))


def scheduled_new_request_ids(scheduler_output: Any) -> list[str]:
    """Requests whose first allocation happened in this ``schedule()`` call."""
    return [r.req_id for r in scheduler_output.scheduled_new_reqs]


def scheduled_request_ids(scheduler_output: Any) -> list[str]:
    """Every request given tokens in this ``schedule()`` call."""
    return list(scheduler_output.num_scheduled_tokens)


def scheduled_resumed_request_ids(scheduler_output: Any) -> list[str]:
    """Requests resumed in this ``schedule()`` call after vLLM preempted them."""
    cached = getattr(scheduler_output, "scheduled_cached_reqs", None)
    return sorted(getattr(cached, "resumed_req_ids", None) or ())


def finished_request_ids(engine_outputs: Any) -> list[str]:
    """Requests ``update_from_output`` finished (any reason), from its return value."""
    out = []
    for outputs in engine_outputs.values():
        for o in outputs.outputs:
            if o.finish_reason is not None:
                out.append(o.request_id)
    return out


def finish_with_error(scheduler: Any, request_ids: list[str], stop_reasons: dict[str, str],
                      engine_outputs: dict[int, Any]) -> list[str]:
    """Finish waiting requests with vLLM's error finish reason and ``stop_reason`` set,
    and add their outputs to ``engine_outputs`` (what ``update_from_output`` returns), the
    way vLLM itself reports a request-level error. Returns the ids really finished."""
    from vllm.v1.engine import EngineCoreOutput, EngineCoreOutputs
    from vllm.v1.request import RequestStatus

    done = []
    for request in scheduler.finish_requests(request_ids, RequestStatus.FINISHED_ERROR):
        request.stop_reason = stop_reasons.get(request.request_id)
        out = EngineCoreOutput(request_id=request.request_id, new_token_ids=[],
                               finish_reason=request.get_finished_reason(),
                               stop_reason=request.stop_reason)
        bucket = engine_outputs.get(request.client_index)
        if bucket is None:
            bucket = engine_outputs[request.client_index] = EngineCoreOutputs(outputs=[])
        bucket.outputs.append(out)
        done.append(request.request_id)
    return done


def remove_waiting(scheduler: Any, requests: list[Any]) -> None:
    """Take requests out of the scheduler's waiting queue (they stay known to it)."""
    scheduler.waiting.remove_requests(requests)


def requeue_waiting(scheduler: Any, request: Any) -> None:
    """Put a request taken out by ``remove_waiting`` back at the front of the queue."""
    scheduler.waiting.prepend_request(request)


def park_running(scheduler: Any, keep: set[str]) -> list[Any]:
    """Take running requests other than ``keep`` out of the next step (they keep their
    blocks and are not decoded); give the returned list to ``unpark_running``."""
    parked = [r for r in scheduler.running if r.request_id not in keep]
    if parked:
        scheduler.running = [r for r in scheduler.running if r.request_id in keep]
    return parked


def unpark_running(scheduler: Any, parked: list[Any]) -> None:
    if parked:
        live = [r for r in parked if not r.is_finished()]
        scheduler.running = live + scheduler.running


def request_cached_tokens(request: Request) -> int:
    """Prefix-cache hit of a request that was just scheduled (0 when vLLM keeps none)."""
    n = getattr(request, "num_cached_tokens", None)
    if isinstance(n, int) and n > 0:
        return n
    stats = getattr(request, "prefill_stats", None)
    n = getattr(stats, "num_cached_tokens", 0) if stats is not None else 0
    return n if isinstance(n, int) and n > 0 else 0


try:  # 0.32 raises its own validation error for a prompt the engine cannot take
    from vllm.exceptions import VLLMValidationError as _ValidationError
except ImportError:  # pragma: no cover - older releases raise ValueError
    _ValidationError = ValueError

# What adding a request the engine cannot serve at all (e.g. longer than max_model_len) raises.
REQUEST_REJECTED: tuple[type[BaseException], ...] = (ValueError, _ValidationError)
