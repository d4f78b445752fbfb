"""The in-process engine with ClaimScheduler, for the refinement targets and the live tests
(kept apart from the plugin, which imports nothing of the harness)."""
from __future__ import annotations

from typing import Any, Dict, Optional

from .vllm_arbiter import ClaimArbiter
from .vllm_plugin import ClaimScheduler


def _patched_engine_cls():
    from .vllm_engine import VllmEngine
    from .vllm_target import _Parking

    class PatchedEngine(_Parking, VllmEngine):
        """The in-process engine with ClaimScheduler (spec-driven or live tests)."""

        def __init__(self, num_blocks: int, policy: str = "hard_refuse",
                     cap: Optional[int] = None, **kw: Any) -> None:
            super().__init__(num_blocks, scheduler_cls=ClaimScheduler,
                             additional_config={"kvclaims": {
                                 "policy": policy, "cap_blocks": cap,
                                 # the harness plays one trusted client per tenant
                                 "identity": "client"}}, **kw)
            self.salts: Dict[str, str] = {}

        @property
        def arbiter(self) -> ClaimArbiter:
            return self.scheduler.arbiter

    return PatchedEngine


def PatchedEngine(num_blocks: int, **kw: Any):
    return _patched_engine_cls()(num_blocks, **kw)
