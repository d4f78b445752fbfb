"""Drive a real vLLM ``Scheduler`` offline, in the contract's vocabulary.

The scheduler is vLLM's own ``vllm.v1.core.sched.scheduler.Scheduler`` built from a
``VllmConfig`` whose ``ModelConfig`` points at the locally generated tiny Llama (only its
``config.json`` is read; no weights are loaded, nothing is downloaded). Each step is
``schedule()`` followed by ``update_from_output()`` with a ``ModelRunnerOutput`` that
samples one fixed token for every scheduled request, which is what a model runner
returns to the scheduler.

``SteppedDriver`` holds what the Scheduler-level and the engine-level drivers share:

- ``materialize(object_id, n_blocks, salt=None)``: a one-token request over the object's
  prompt runs to completion; its full blocks stay cached.
- ``admit(request_id, n_blocks, admit_future_reuse=True, prefix_object=None)``: the
  request is added and one step runs. If the scheduler placed it, it is live (prefill
  done, one token sampled) until ``finish``. If the pool could not hold it, vLLM would
  keep it waiting; the driver aborts it instead and reports ``admitted=False``.
- ``finish(request_id)``: the request is finished from outside (vLLM's abort path),
  which frees its blocks tail first exactly like a natural finish.
- ``observe()``: a ``PoolSnapshot`` read from the scheduler's own block pool.

Two behaviours of a stepped runtime that the bare core driver does not show:

- every later step also decodes every live request, so a live request whose prompt is
  ``n`` full blocks holds ``n + 1`` blocks from its first decode step on;
- no-admit (``admit_future_reuse=False``) travels as ``SamplingParams.extra_args``
  (``kvclaims_admit_future_reuse: False``); the scheduler's KVCacheManager is wrapped so
  such requests are allocated with vLLM's ``delay_cache_blocks=True`` (see
  ``vllm_adapter.install_no_admit``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from kvclaims.refinement import vllm_adapter as va
from kvclaims.refinement.vllm_core import (
    BLOCK_SIZE,
    AdmitResult,
    ObjectRegistry,
    PoolObserver,
    object_token_ids,
    snapshot_pool,
)
from kvclaims.refinement.vllm_model import ensure_tiny_llama

# The token every fake model-runner step samples (any id below the vocabulary size).
SAMPLED_TOKEN = 7
# Live requests may decode this many tokens before vLLM would finish them by length.
LIVE_MAX_TOKENS = 8


@dataclass(frozen=True)
class StepOutcome:
    """What one step reported about one request."""

    request_id: str
    num_cached_tokens: int | None  # set on the step that ran the request's prefill
    finished: bool


class SteppedDriver(PoolObserver):
    """Shared materialize/admit/finish/observe over a scheduler that runs in steps."""

    block_size: int
    num_blocks: int
    scheduler: Any

    def _setup_observation(self) -> None:
        self.manager = va.scheduler_kv_cache_manager(self.scheduler)
        self.block_pool = self.manager.block_pool
        self._events = va.install_event_recorder(self.scheduler)
        va.install_no_admit(self.manager, va.denies_future_reuse)
        self.registry = ObjectRegistry()
        self.live: dict[str, str] = {}  # our request id -> the scheduler's request id

    def _live_ids(self) -> dict[str, str]:
        return dict(self.live)

    # subclasses: submit a request, run one step, abort a request
    def _submit(self, request_id: str, token_ids: list[int], max_tokens: int,
                extra_args: dict[str, Any] | None, salt: str | None) -> str:
        raise NotImplementedError

    def _step(self) -> list[StepOutcome]:
        raise NotImplementedError

    def _abort(self, request_id: str) -> None:
        raise NotImplementedError

    def _run(self, request_id: str, token_ids: list[int], *, max_tokens: int,
             admit_future_reuse: bool = True, salt: str | None = None
             ) -> tuple[str, StepOutcome | None]:
        extra = None if admit_future_reuse else {va.ADMIT_FUTURE_REUSE_KEY: False}
        internal = self._submit(request_id, token_ids, max_tokens, extra, salt)
        mine = [o for o in self._step() if o.request_id == request_id]
        return internal, (mine[0] if mine else None)

    def materialize(self, object_id: str, n_blocks: int, salt: str | None = None
                    ) -> AdmitResult:
        tokens = object_token_ids(object_id, n_blocks, self.block_size)
        rid = f"materialize:{object_id}"
        _, outcome = self._run(rid, tokens, max_tokens=1, salt=salt)
        probe = va.make_request(rid, tokens, block_size=self.block_size, cache_salt=salt)
        self.registry.add(object_id, tokens, probe.block_hashes, salt)
        if outcome is None or outcome.num_cached_tokens is None:
            self._abort(rid)
            return AdmitResult(rid, False, (), 0, 0)
        while not outcome.finished:  # pragma: no cover - max_tokens=1 ends on step one
            outcome = next(o for o in self._step() if o.request_id == rid)
        ids = self.observe_objects()[object_id]
        cached = outcome.num_cached_tokens or 0
        return AdmitResult(rid, True, tuple(b for b in ids if b is not None),
                           cached // self.block_size, cached)

    def admit(self, request_id: str, n_blocks: int, admit_future_reuse: bool = True,
              prefix_object: str | None = None) -> AdmitResult:
        tokens, salt = self._prompt(request_id, n_blocks, prefix_object)
        internal, outcome = self._run(request_id, tokens, max_tokens=LIVE_MAX_TOKENS,
                                      admit_future_reuse=admit_future_reuse, salt=salt)
        if outcome is None or outcome.num_cached_tokens is None:
            self._abort(request_id)
            return AdmitResult(request_id, False, (), 0, 0)
        self.live[request_id] = internal
        ids = va.allocated_block_ids(self.manager.get_blocks(internal))
        cached = outcome.num_cached_tokens
        return AdmitResult(request_id, True, tuple(ids), cached // self.block_size, cached)

    def finish(self, request_id: str) -> None:
        self.live.pop(request_id)
        self._abort(request_id)

    def observe_objects(self) -> dict[str, tuple[int | None, ...]]:
        snap = snapshot_pool(self.block_pool, self.registry, {}, ())
        return {oid: o.block_ids for oid, o in snap.objects.items()}


def build_vllm_config(num_blocks: int, block_size: int = BLOCK_SIZE,
                      model_path: str | os.PathLike[str] | None = None) -> Any:
    """A ``VllmConfig`` for the tiny local model with a pool of ``num_blocks`` blocks."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
    from vllm.config import (CacheConfig, KVEventsConfig, ModelConfig, SchedulerConfig,
                             VllmConfig)

    max_len = (num_blocks - 1) * block_size
    model = ModelConfig(model=str(ensure_tiny_llama(model_path)), skip_tokenizer_init=True,
                        max_model_len=max_len, dtype="float32")
    scheduler = SchedulerConfig(max_model_len=max_len, is_encoder_decoder=False,
                                max_num_batched_tokens=max_len, max_num_seqs=16,
                                enable_chunked_prefill=False)
    cache = CacheConfig(block_size=block_size, enable_prefix_caching=True)
    cache.num_gpu_blocks = num_blocks
    return VllmConfig(model_config=model, cache_config=cache, scheduler_config=scheduler,
                      kv_events_config=KVEventsConfig(enable_kv_cache_events=True,
                                                      publisher="null"))


class VllmScheduler(SteppedDriver):
    """vLLM's own Scheduler over a pool of ``num_blocks`` blocks, driven step by step."""

    def __init__(self, num_blocks: int, block_size: int = BLOCK_SIZE,
                 model_path: str | os.PathLike[str] | None = None) -> None:
        from vllm.v1.core.sched.scheduler import Scheduler
        from vllm.v1.structured_output import StructuredOutputManager

        self.num_blocks = num_blocks
        self.block_size = block_size
        self.vllm_config = build_vllm_config(num_blocks, block_size, model_path)
        self.scheduler = Scheduler(
            vllm_config=self.vllm_config,
            kv_cache_config=va.make_kv_cache_config(num_blocks, block_size),
            structured_output_manager=StructuredOutputManager(self.vllm_config),
            block_size=block_size,
        )
        self._setup_observation()

    def _submit(self, request_id: str, token_ids: list[int], max_tokens: int,
                extra_args: dict[str, Any] | None, salt: str | None) -> str:
        request = va.make_request(request_id, token_ids, block_size=self.block_size,
                                  max_tokens=max_tokens, cache_salt=salt,
                                  extra_args=extra_args)
        self.scheduler.add_request(request)
        return request_id

    def _step(self) -> list[StepOutcome]:
        from vllm.v1.outputs import ModelRunnerOutput

        sched_out = self.scheduler.schedule()
        ids = list(sched_out.num_scheduled_tokens)
        runner_out = ModelRunnerOutput(
            req_ids=ids,
            req_id_to_index={rid: i for i, rid in enumerate(ids)},
            sampled_token_ids=[[SAMPLED_TOKEN] for _ in ids],
        )
        outcomes = []
        for engine_outputs in self.scheduler.update_from_output(sched_out, runner_out).values():
            for out in engine_outputs.outputs:
                stats = getattr(out, "prefill_stats", None)
                outcomes.append(StepOutcome(
                    out.request_id,
                    None if stats is None else int(stats.num_cached_tokens),
                    out.finish_reason is not None))
        return outcomes

    def _abort(self, request_id: str) -> None:
        from vllm.v1.request import RequestStatus

        self.scheduler.finish_requests(request_id, RequestStatus.FINISHED_ABORTED)
