"""Drive the whole in-process vLLM engine (``vllm.LLM``) over the tiny local model.

The engine runs the generated tiny Llama (``vllm_model``) on the CPU backend, in process
(``VLLM_ENABLE_V1_MULTIPROCESSING=0``, ``distributed_executor_backend="uni"``), with
prefix caching on, KV cache events on and a pool of exactly ``num_blocks`` blocks
(``num_gpu_blocks_override``; block 0 is the null block). Block size 16 needs the CPU
attention backend's declared block sizes widened in this process
(``vllm_adapter.allow_cpu_block_size``); its kernels have a 16-token path.

The operations are those of ``vllm_sched.SteppedDriver``; each step is a real
``LLMEngine.step()`` that runs the model. The scheduler and its block pool are the
engine's own (``llm.llm_engine.engine_core.engine_core.scheduler``).

Environment set before vLLM is imported (unless already set): ``HF_HUB_OFFLINE=1``,
``VLLM_TARGET_DEVICE=cpu``, ``VLLM_ENABLE_V1_MULTIPROCESSING=0``,
``VLLM_CPU_OMP_THREADS_BIND=nobind`` and ``OMP_NUM_THREADS=1`` (without the last two,
per-request latency on two cores rises about tenfold).
"""

from __future__ import annotations

import os
from typing import Any

ENGINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "VLLM_TARGET_DEVICE": "cpu",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",
    "OMP_NUM_THREADS": "1",
}


def set_engine_env() -> None:
    for key, value in ENGINE_ENV.items():
        os.environ.setdefault(key, value)


set_engine_env()

from kvclaims.refinement import vllm_adapter as va  # noqa: E402
from kvclaims.refinement.vllm_core import BLOCK_SIZE  # noqa: E402
from kvclaims.refinement.vllm_model import ensure_tiny_llama  # noqa: E402
from kvclaims.refinement.vllm_sched import StepOutcome, SteppedDriver  # noqa: E402


GPU_MEMORY_UTILIZATION = 0.25


def engine_kwargs(num_blocks: int, block_size: int, model_path: Any,
                  **extra: Any) -> dict[str, Any]:
    """``vllm.LLM`` keywords for the tiny Llama over a pool of exactly ``num_blocks`` blocks
    (in-process or multi-process alike: that is decided by the environment)."""
    return dict(
        model=str(model_path),
        skip_tokenizer_init=True,
        enable_prefix_caching=True,
        num_gpu_blocks_override=num_blocks,
        block_size=block_size,
        max_model_len=(num_blocks - 1) * block_size,
        distributed_executor_backend="uni",
        dtype="float32",
        enforce_eager=True,
        seed=0,
        # On the CPU backend this is the fraction of the NUMA node's memory that must
        # be free at start-up; the pool itself is fixed by num_gpu_blocks_override.
        gpu_memory_utilization=GPU_MEMORY_UTILIZATION,
        kv_events_config={"enable_kv_cache_events": True, "publisher": "null"},
        **extra,  # e.g. scheduler_cls and additional_config for the claim arbiter
    )


class VllmEngine(SteppedDriver):
    """An in-process ``vllm.LLM`` with a pool of ``num_blocks`` blocks of ``block_size``."""

    def __init__(self, num_blocks: int, block_size: int = BLOCK_SIZE,
                 model_path: str | os.PathLike[str] | None = None,
                 **llm_kwargs: Any) -> None:
        from vllm import LLM

        if not va.allow_cpu_block_size(block_size):  # pragma: no cover
            raise RuntimeError(f"cannot declare block size {block_size} on this vLLM")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.model_path = ensure_tiny_llama(model_path)
        self.llm = LLM(**engine_kwargs(num_blocks, block_size, self.model_path, **llm_kwargs))
        self.engine = self.llm.llm_engine
        self.scheduler = va.engine_scheduler(self.llm)
        self._setup_observation()

    def _submit(self, request_id: str, token_ids: list[int], max_tokens: int,
                extra_args: dict[str, Any] | None, salt: str | None) -> str:
        from vllm.inputs import TokensPrompt

        prompt = TokensPrompt(prompt_token_ids=list(token_ids))
        if salt is not None:
            prompt["cache_salt"] = salt
        self.engine.add_request(request_id, prompt, va.sampling_params(max_tokens, extra_args))
        # The engine core knows the request under an internal id.
        for internal, request in self.scheduler.requests.items():
            if internal == request_id or internal.startswith(f"{request_id}-"):
                return internal
        return request_id

    def _step(self) -> list[StepOutcome]:
        outcomes = []
        for out in self.engine.step():
            cached = getattr(out, "num_cached_tokens", None)
            outcomes.append(StepOutcome(out.request_id,
                                        None if cached is None else int(cached),
                                        bool(out.finished)))
        return outcomes

    def _abort(self, request_id: str) -> None:
        self.engine.abort_request([request_id])

    def generate_cached_tokens(self, token_ids: list[int], salt: str | None = None) -> int:
        """Run a one-token request over ``token_ids``; its ``num_cached_tokens``."""
        rid = f"probe-{len(self._events)}-{id(token_ids)}"
        _, outcome = self._run(rid, list(token_ids), max_tokens=1, salt=salt)
        if outcome is None or outcome.num_cached_tokens is None:
            self._abort(rid)
            raise RuntimeError("the probe request was not scheduled")
        return outcome.num_cached_tokens

    def rerequest_cached_tokens(self, object_id: str, extra_blocks: int = 0) -> int:
        """``num_cached_tokens`` of a request for ``object_id``'s prompt (plus fresh blocks).

        A prompt that is exactly a cached prefix recomputes its last token, so a fully
        cached n-block object shows ``(n - 1) * block_size`` cached tokens; with
        ``extra_blocks`` > 0 it can show all ``n * block_size``.
        """
        obj = self.registry.objects[object_id]
        tail = [SAMPLED_TAIL_TOKEN] * (extra_blocks * self.block_size)
        return self.generate_cached_tokens(obj.token_ids + tail, obj.salt)


SAMPLED_TAIL_TOKEN = 3
