"""The claim arbiter as a vLLM plugin: a ``Scheduler`` subclass, no fork.

Select it with ``scheduler_cls="kvclaims.refinement.vllm_plugin.ClaimScheduler"``
(``--scheduler-cls`` on the server) and configure it through
``additional_config={"kvclaims": {"policy": "hard_refuse", "cap_blocks": 60,
"telemetry_path": "claims.jsonl"}}`` (or ``KVCLAIMS_POLICY`` / ``KVCLAIMS_TELEMETRY``).
The ``vllm.general_plugins`` entry point (``register``) runs in every vLLM process; it
declares block size 16 on the CPU attention backend when ``KVCLAIMS_CPU_BLOCK_16=1``.

Per request, ``SamplingParams.extra_args`` (``vllm_xargs`` through the OpenAI server):

- ``kvclaims_claim``: a claim on the request's own prompt prefix, e.g.
  ``{"claim_id": "c1", "object_id": "sys-prompt", "protection_mode": "hard_protected",
  "predicate": {"kind": "leading_prefix_at_least", "k": 60}, "footprint_blocks": 60}``
  (optional: ``owner_scope``, ``duration``, ``cache_identity``); the object is the
  prompt's first ``footprint_blocks`` full blocks, under the request's cache salt.
- ``kvclaims_tenant``: who asks (a claim's owner scope must be this tenant).
- ``kvclaims_release``: a claim id the tenant releases.
- ``kvclaims_admit_future_reuse``: ``false`` to deny future reuse of its KV (no-admit).

Through the OpenAI server, ``vllm_xargs`` admits only flat values (strings, numbers, lists
of them; vLLM's request validation refuses a nested object, and turns ``true``/``false``
into 1/0). There the claim travels as a JSON string of the same object,
``"kvclaims_claim": '{"claim_id": "c1", ...}'``, and vLLM's
``to_sampling_params`` passes it into ``extra_args`` unchanged; the plugin decodes it.
Tenant and release are strings either way. A release by anyone but the claim's owner is
refused (``release_denied`` in the telemetry, the claim unchanged) and that request
finishes with the error below.

A malformed claim (wrong types, unknown mode, non-positive sizes, another tenant's
object, ...) finishes *that* request with vLLM's error finish reason and a stop reason
``kvclaims: bad claim: ...``; every other request is served as usual.

Each step, before vLLM's own scheduling: the logical clock ticks (expiring claims
expire, event first); every newly arrived request that does not fit beside the
protected claims is deferred (conflict event, ``request_deferred``) and held outside
vLLM's waiting queue (so it never blocks the queue head); a held request that fits again
is put back at the front; one that waits only for expiring claims waits for their
expiry; one that cannot fit while the claims stand is refused
(``hard_refuse``: error finish, stop reason ``kvclaims: refused: blocking claims ...``)
or gets its blocking claims demoted, events first (``hard_demote``), and is then served.
The arbiter's work per step is O(new + held requests), independent of the pool size.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Tuple

from vllm.v1.core.sched.scheduler import Scheduler

from kvclaims.model.claims import (CacheIdentity, ClaimError, ClaimSpec, Predicate,
                                   parse_mode)
from kvclaims.model.telemetry import Telemetry
from kvclaims.spec.vocab import RESPONSIBLE, Mode

from . import vllm_adapter as va
from .vllm_arbiter import ClaimArbiter

CLAIM_KEY = "kvclaims_claim"
TENANT_KEY = "kvclaims_tenant"
RELEASE_KEY = "kvclaims_release"
SCHEDULER_CLS = "kvclaims.refinement.vllm_plugin.ClaimScheduler"


def register() -> None:
    """``vllm.general_plugins`` entry point: runs in every vLLM process."""
    if os.environ.get("KVCLAIMS_CPU_BLOCK_16") == "1":
        va.allow_cpu_block_size(16)


def _int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def parse_claim(extra: Dict[str, Any], hashes: List[bytes], salt: Optional[str],
                block_size: int, model_id: str) -> Optional[ClaimSpec]:
    """The claim a request carries, or None; ClaimError names what is wrong with it."""
    raw = extra.get(CLAIM_KEY)
    tenant = extra.get(TENANT_KEY)
    if tenant is not None and (not isinstance(tenant, str) or not tenant):
        raise ClaimError(f"{TENANT_KEY} must be a non-empty string")
    if raw is None:
        return None
    if isinstance(raw, str):            # vllm_xargs: the claim object as a JSON string
        try:
            raw = json.loads(raw)
        except ValueError:
            pass
    if not isinstance(raw, dict):
        raise ClaimError(f"{CLAIM_KEY} must be an object (or a JSON string of one)")
    unknown = set(raw) - {"claim_id", "object_id", "owner_scope", "protection_mode",
                          "predicate", "footprint_blocks", "duration", "cache_identity"}
    if unknown:
        raise ClaimError(f"unknown claim field(s) {sorted(unknown)}")
    owner = raw.get("owner_scope", tenant)
    if owner is None:
        raise ClaimError("owner_scope (or kvclaims_tenant) is required")
    if tenant is not None and owner != tenant:
        raise ClaimError(f"tenant {tenant!r} cannot claim for owner {owner!r}")
    pred = raw.get("predicate")
    if not isinstance(pred, dict):
        raise ClaimError("predicate must be an object with kind and k")
    kind, k, start = pred.get("kind"), pred.get("k"), pred.get("start", 0)
    if kind == "leading_prefix_at_least":
        start = 0
    elif kind != "contiguous_range":
        raise ClaimError(f"unknown predicate kind {kind!r}")
    if not _int(k) or not _int(start):
        raise ClaimError("predicate k and start must be integers")
    footprint = raw.get("footprint_blocks", start + k if _int(k) and _int(start) else None)
    if not _int(footprint) or footprint <= 0:
        raise ClaimError("footprint_blocks must be a positive integer")
    if footprint > len(hashes):
        raise ClaimError(f"footprint_blocks {footprint} exceeds the prompt's "
                         f"{len(hashes)} full blocks")
    ident = raw.get("cache_identity") or {}
    if not isinstance(ident, dict):
        raise ClaimError("cache_identity must be an object")
    identity = CacheIdentity(model_id=model_id, salt_namespace=salt or "",
                             block_size=block_size)
    if ident.get("salt_namespace", identity.salt_namespace) != identity.salt_namespace:
        raise ClaimError("cache_identity.salt_namespace differs from the request's cache salt")
    if ident.get("block_size", block_size) != block_size:
        raise ClaimError(f"cache_identity.block_size differs from the engine's {block_size}")
    return ClaimSpec(raw.get("claim_id"), owner, identity, raw.get("object_id"),
                     Predicate(start, k), footprint, parse_mode(raw.get("protection_mode")),
                     raw.get("duration"))


class ClaimScheduler(Scheduler):
    """vLLM's Scheduler with the resident-claim arbiter in front of its admission."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        extra = getattr(self.vllm_config, "additional_config", None) or {}
        conf = extra.get("kvclaims", {}) if isinstance(extra, dict) else {}
        self.kvclaims_reset(
            conf.get("policy", os.environ.get("KVCLAIMS_POLICY", "hard_refuse")),
            conf.get("cap_blocks"),
            Telemetry(path=conf.get("telemetry_path", os.environ.get("KVCLAIMS_TELEMETRY")),
                      keep=bool(conf.get("keep_events", True))))

    def kvclaims_reset(self, policy: Any, cap: Optional[int] = None,
                       telemetry: Optional[Telemetry] = None) -> ClaimArbiter:
        """A fresh arbiter (the previous one's pins are dropped first)."""
        old = getattr(self, "arbiter", None)
        if old is not None:
            for obj in old.objects.values():
                obj.claims.clear()
                old.refresh(obj)
        self.arbiter = ClaimArbiter(self.kv_cache_manager.block_pool, policy=policy, cap=cap,
                                    telemetry=telemetry, block_size=self.block_size)
        self._arrived: List[Any] = []
        self._held: Dict[str, Any] = {}
        self._errors: Dict[str, str] = {}
        self.kvclaims_auto = True
        model = getattr(self.vllm_config.model_config, "model", "model")
        self._model_id = str(model)
        return self.arbiter

    # --- arrival ------------------------------------------------------------------------------

    def add_request(self, request: Any) -> None:
        super().add_request(request)
        extra = va.request_extra_args(request)
        if not any(k.startswith("kvclaims_") for k in extra):
            self._arrived.append(request)
            return
        rid = request.request_id
        arb = self.arbiter
        try:
            hashes = va.request_block_hashes(request)
            spec = parse_claim(extra, hashes, va.request_cache_salt(request), self.block_size,
                               self._model_id)
            release = extra.get(RELEASE_KEY)
            if release is not None:
                if not isinstance(release, str) or release not in arb.claims:
                    raise ClaimError(f"{RELEASE_KEY}: unknown claim {release!r}")
                actor = extra.get(TENANT_KEY) or ""
                arb.release(release, actor)
                if arb.claims[release].status in RESPONSIBLE:   # release_denied emitted
                    raise ClaimError(f"{RELEASE_KEY}: tenant {actor!r} may not release "
                                     f"claim {release!r}: only its owner may")
            if spec is not None:
                obj = arb.objects.get(spec.object_id)
                mine = hashes[:spec.footprint_blocks]
                if obj is not None and obj.owner != spec.owner_scope:
                    raise ClaimError(f"object {spec.object_id!r} belongs to another tenant")
                if obj is not None and obj.hashes != mine:
                    raise ClaimError(f"object {spec.object_id!r} is registered with "
                                     f"different content")
                if spec.claim_id in arb.claims:
                    raise ClaimError(f"claim_id {spec.claim_id!r} is already in use")
                arb.register_object(spec.object_id, mine, owner=spec.owner_scope,
                                    salt=va.request_cache_salt(request))
                arb.submit(spec)
        except (ClaimError, TypeError, ValueError) as e:
            arb._count("bad_input")
            self._errors[rid] = f"kvclaims: bad claim: {e}"
            va.remove_waiting(self, [request])
            return
        self._arrived.append(request)

    # --- arbitration --------------------------------------------------------------------------

    def _need(self, request: Any) -> int:
        """Blocks the request would take from the free queue: its prompt's blocks minus
        the prefix hits already held by someone, plus evictable hits it would revive."""
        blocks, hit_tokens = va.get_computed_blocks(self.kv_cache_manager, request)
        total = -(-request.num_tokens // self.block_size)
        hit = hit_tokens // self.block_size
        revive = sum(1 for b in blocks.blocks[0][:hit] if b.ref_cnt == 0) if hit else 0
        return total - hit + revive

    def _arbitrate(self) -> None:
        arb = self.arbiter
        arrived, self._arrived = self._arrived, []
        if arb.protected_resident:
            for req in arrived:
                rid = req.request_id
                if rid in self._errors or req.is_finished() or req.num_computed_tokens:
                    continue
                if -(-req.num_tokens // self.block_size) <= arb.free_blocks():
                    continue        # fits whatever it hits: no prefix lookup needed
                need = self._need(req)
                if arb.in_conflict(need) and arb.defer(rid, need):
                    va.remove_waiting(self, [req])
                    self._held[rid] = req
        for rid, req in list(self._held.items()):
            need = self._need(req)
            if arb.in_conflict(need) and arb.infeasible(need):
                blocking = arb.blocking_claims()
                if blocking and all(arb.claims[c].spec.duration is not None
                                    and arb.claims[c].spec.protection_mode == Mode.EXPIRING
                                    for c in blocking):
                    continue        # every claim in the way expires: wait for it
                if arb.policy.demote_on_conflict:
                    for cid in arb.blocking_claims():
                        if arb.in_conflict(need):
                            arb.demote(cid, rid, need)
                elif arb.refuse(rid, need):
                    named = ", ".join(arb.requests[rid].named) or "none"
                    self._errors[rid] = (f"kvclaims: refused: blocking claims {named} "
                                         f"(infeasible: protected {arb.protected_resident} + "
                                         f"{need} > usable {arb.usable})")
                    del self._held[rid]
                    continue
            if not arb.in_conflict(need):
                del self._held[rid]
                va.requeue_waiting(self, req)

    def schedule(self, *args: Any, **kwargs: Any) -> Any:
        if not self.kvclaims_auto:          # driven step by step from outside (refinement)
            return super().schedule(*args, **kwargs)
        self.arbiter.tick()
        if self._arrived or self._held:
            self._arbitrate()
        out = super().schedule(*args, **kwargs)
        arb = self.arbiter
        for rid in va.scheduled_new_request_ids(out):
            req = self.requests[rid]
            live = len(va.request_block_ids(self.kv_cache_manager, rid))
            hit = va.request_cached_tokens(req) // self.block_size
            arb.admitted(rid, live, not va.denies_future_reuse(req), hit)
        if arb._victims:
            arb.settle("schedule")
        if arb._pending:
            arb.check_materialized()
        return out

    def update_from_output(self, scheduler_output: Any, model_runner_output: Any) -> Any:
        outs = super().update_from_output(scheduler_output, model_runner_output)
        if not self.kvclaims_auto:
            return outs
        for rid in va.finished_request_ids(outs):
            self.arbiter.finished(rid)
        if self._errors:
            errors, self._errors = self._errors, {}
            va.finish_with_error(self, list(errors), errors, outs)
        return outs

    def finish_requests(self, request_ids: Any, finished_status: Any) -> Any:
        done = super().finish_requests(request_ids, finished_status)
        for req in done if self.kvclaims_auto else ():
            self.arbiter.finished(req.request_id)
            self._held.pop(req.request_id, None)
        return done

    def get_num_unfinished_requests(self) -> int:
        return super().get_num_unfinished_requests() + len(self._held) + len(self._errors)

    # --- metrics ------------------------------------------------------------------------------

    def make_stats(self, *args: Any, **kwargs: Any) -> Any:
        """vLLM's SchedulerStats, with the claim counters attached as ``kvclaims``."""
        stats = super().make_stats(*args, **kwargs)
        if stats is not None:
            try:
                stats.kvclaims = dict(self.arbiter.counters)
            except Exception:  # pragma: no cover - a frozen stats type
                pass
        return stats


def _patched_engine_cls():
    from .vllm_engine import VllmEngine
    from .vllm_target import _Parking

    class PatchedEngine(_Parking, VllmEngine):
        """The in-process engine with ClaimScheduler (spec-driven or live tests)."""

        def __init__(self, num_blocks: int, policy: str = "hard_refuse",
                     cap: Optional[int] = None, **kw: Any) -> None:
            super().__init__(num_blocks, scheduler_cls=ClaimScheduler,
                             additional_config={"kvclaims": {"policy": policy,
                                                             "cap_blocks": cap}}, **kw)
            self.salts: Dict[str, str] = {}

        @property
        def arbiter(self) -> ClaimArbiter:
            return self.scheduler.arbiter

    return PatchedEngine


def PatchedEngine(num_blocks: int, **kw: Any):
    return _patched_engine_cls()(num_blocks, **kw)
