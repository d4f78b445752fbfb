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
- ``kvclaims_identity``: who asks, as the server attests it (identity = "server", the
  default: model/tenancy.py, refinement/identity.py); a claim's owner scope must be this
  tenant, and the request hashes under the tenant's namespace of its cache salt.
- ``kvclaims_tenant``: who asks, believed only under identity = "client" (configured for a
  single trusted client or tests); refused with a reason under identity = "server".
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

from vllm.logger import init_logger
from vllm.v1.core.sched.scheduler import Scheduler

from kvclaims.model.claims import (CacheIdentity, ClaimError, ClaimSpec, Predicate,
                                   parse_mode, validate_claim)
from kvclaims.model.telemetry import Telemetry
from kvclaims.model.tenancy import (IDENTITY_KEY, SECRET_ENV, TENANT_KEY,  # noqa: F401
                                    ClaimLimits, TenantIdentity, tenant_salt)
from kvclaims.spec.vocab import RESPONSIBLE, Mode, RequestStatus as RS

from . import vllm_adapter as va
from .vllm_arbiter import ClaimArbiter

CLAIM_KEY = "kvclaims_claim"
RELEASE_KEY = "kvclaims_release"
SCHEDULER_CLS = "kvclaims.refinement.vllm_plugin.ClaimScheduler"

# Server defaults (additional_config["kvclaims"] overrides each): how long a deferred request
# may wait before it is refused, the longest claim duration accepted, the telemetry events
# kept in memory (the file, when configured, has them all).
DEFAULT_MAX_DEFER_STEPS = 256
DEFAULT_MAX_DURATION = 1_000_000
DEFAULT_EVENT_RING = 10_000


# vLLM's OpenAI server answers a request that finished with an error by a bare 500
# ("Internal server error"): the stop reason never reaches an HTTP client, so each one is
# also logged here with its request id (under vLLM's logger, in the server's log).
logger = init_logger("vllm.kvclaims")


class ClaimRejected(ClaimError):
    """A well-formed claim that acceptance control rejected: the request is not served
    without the claim it asked for (fail closed), and the client is told why."""


def register() -> None:
    """``vllm.general_plugins`` entry point: runs in every vLLM process."""
    if os.environ.get("KVCLAIMS_CPU_BLOCK_16") == "1":
        va.allow_cpu_block_size(16)


def _int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


# Limits on what a client may send as a claim: a claim is a handful of short fields.
MAX_CLAIM_CHARS = 4096
MAX_CLAIM_DEPTH = 4


def _depth(s: str) -> int:
    """Nesting depth of a JSON text, counted without parsing it (so a hostile text cannot
    exhaust the parser's recursion); brackets inside strings are skipped."""
    depth = best = 0
    in_str = esc = False
    for ch in s:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            best = max(best, depth)
        elif ch in "]}":
            depth -= 1
    return best


def _decode_claim(raw: Any) -> Any:
    """The claim object from extra_args: a dict, or (vllm_xargs) a JSON string of one,
    within the size and depth limits."""
    if isinstance(raw, str):
        if len(raw) > MAX_CLAIM_CHARS:
            raise ClaimError(f"{CLAIM_KEY} is longer than {MAX_CLAIM_CHARS} characters")
        if _depth(raw) > MAX_CLAIM_DEPTH:
            raise ClaimError(f"{CLAIM_KEY} is nested deeper than {MAX_CLAIM_DEPTH} levels")
        try:
            raw = json.loads(raw)
        except ValueError as e:
            raise ClaimError(f"{CLAIM_KEY} is not valid JSON ({e.msg})") from None
    elif isinstance(raw, dict):
        if _depth(json.dumps(raw, default=str)) > MAX_CLAIM_DEPTH:
            raise ClaimError(f"{CLAIM_KEY} is nested deeper than {MAX_CLAIM_DEPTH} levels")
    if not isinstance(raw, dict):
        raise ClaimError(f"{CLAIM_KEY} must be an object (or a JSON string of one)")
    return raw


def parse_claim(extra: Dict[str, Any], hashes: List[bytes], salt: Optional[str],
                block_size: int, model_id: str, tenant: Optional[str] = None,
                hashed_salt: Optional[str] = None) -> Optional[ClaimSpec]:
    """The claim a request carries, validated, or None; ClaimError names what is wrong.
    ``tenant``: who the request is (TenantIdentity.resolve); ``salt``: the cache salt the
    client sent; ``hashed_salt``: the one its blocks are hashed under (the tenant's
    namespace, under server identity), which is the claim's cache identity."""
    raw = extra.get(CLAIM_KEY)
    if raw is None:
        return None
    raw = _decode_claim(raw)
    unknown = set(raw) - {"claim_id", "object_id", "owner_scope", "protection_mode",
                          "predicate", "footprint_blocks", "duration", "cache_identity"}
    if unknown:
        raise ClaimError(f"unknown claim field(s) {sorted(map(str, unknown))}")
    owner = raw.get("owner_scope", tenant)
    if owner is None:
        raise ClaimError("a claim needs a tenant: the server's credentials (identity = "
                         "server) or kvclaims_tenant (identity = client)")
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
    footprint = raw.get("footprint_blocks", start + k)
    if not _int(footprint) or footprint <= 0:
        raise ClaimError("footprint_blocks must be a positive integer")
    if footprint > len(hashes):
        raise ClaimError(f"footprint_blocks {footprint} exceeds the prompt's "
                         f"{len(hashes)} full blocks")
    ident = raw.get("cache_identity") or {}
    if not isinstance(ident, dict):
        raise ClaimError("cache_identity must be an object")
    identity = CacheIdentity(model_id=model_id, block_size=block_size,
                             salt_namespace=(salt if hashed_salt is None else hashed_salt) or "")
    if ident.get("salt_namespace", salt or "") != (salt or ""):
        raise ClaimError("cache_identity.salt_namespace differs from the request's cache salt")
    if ident.get("block_size", block_size) != block_size:
        raise ClaimError(f"cache_identity.block_size differs from the engine's {block_size}")
    duration = raw.get("duration")
    spec = ClaimSpec(raw.get("claim_id"), owner, identity, raw.get("object_id"),
                     Predicate(start, k), footprint, parse_mode(raw.get("protection_mode")),
                     duration)
    return validate_claim(spec, footprint)


def _conf_int(conf: Dict[str, Any], key: str, default: int, lo: int = 1) -> int:
    v = conf.get(key, default)
    if not _int(v) or v < lo:
        raise ValueError(f"kvclaims.{key} must be an integer >= {lo}, got {v!r}")
    return v


class ClaimScheduler(Scheduler):
    """vLLM's Scheduler with the resident-claim arbiter in front of its admission."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        extra = getattr(self.vllm_config, "additional_config", None) or {}
        conf = extra.get("kvclaims", {}) if isinstance(extra, dict) else {}
        self.kvclaims_conf = dict(conf)
        if "identity" not in self.kvclaims_conf and os.environ.get("KVCLAIMS_IDENTITY"):
            self.kvclaims_conf["identity"] = os.environ["KVCLAIMS_IDENTITY"]
        keep = conf.get("keep_events", DEFAULT_EVENT_RING)
        self.kvclaims_reset(
            conf.get("policy", os.environ.get("KVCLAIMS_POLICY", "hard_refuse")),
            conf.get("cap_blocks"),
            Telemetry(path=conf.get("telemetry_path", os.environ.get("KVCLAIMS_TELEMETRY")),
                      keep=keep if _int(keep) or isinstance(keep, bool) else
                      DEFAULT_EVENT_RING))

    def kvclaims_reset(self, policy: Any, cap: Optional[int] = None,
                       telemetry: Optional[Telemetry] = None,
                       headroom: Optional[int] = None) -> ClaimArbiter:
        """A fresh arbiter (the previous one's pins are dropped first)."""
        old = getattr(self, "arbiter", None)
        if old is not None:
            for obj in list(old.objects.values()):
                obj.claims.clear()
                old.refresh(obj)
        conf = getattr(self, "kvclaims_conf", {})
        self.max_defer_steps = _conf_int(conf, "max_defer_steps", DEFAULT_MAX_DEFER_STEPS)
        # who a request is: attested by the server (default) or, only when the operator
        # says so, the request's own kvclaims_tenant (single tenant, tests); the secret
        # comes from the environment, never from the logged configuration
        self.identity = TenantIdentity(conf.get("identity", "server"),
                                       os.environ.get(SECRET_ENV, ""))
        self.arbiter = ClaimArbiter(
            self.kv_cache_manager.block_pool, policy=policy, cap=cap, telemetry=telemetry,
            block_size=self.block_size,
            max_duration=_conf_int(conf, "max_claim_duration", DEFAULT_MAX_DURATION),
            keep_ended=_conf_int(conf, "keep_ended", 4096, lo=0),
            headroom=conf.get("headroom_blocks") if headroom is None else headroom,
            limits=ClaimLimits.from_conf(conf.get("limits")))
        self._held: Dict[str, Any] = {}
        self._errors: Dict[str, str] = {}
        self.kvclaims_auto = True
        # the logical clock advances once per engine step; a refinement driver that plays
        # the spec's own tick steps turns this off (the clock is then the spec's)
        self.kvclaims_tick_per_step = bool(conf.get("tick_per_step", True))
        self.kvclaims_steps = 0
        model = getattr(self.vllm_config.model_config, "model", "model")
        self._model_id = str(model)
        return self.arbiter

    # --- arrival ------------------------------------------------------------------------------

    def add_request(self, request: Any) -> None:
        try:
            tenant = self._tenant_of(request)
        except Exception as e:  # noqa: BLE001 - checked below, once the request is queued
            tenant, bad = None, e
        else:
            bad = None
        if self.identity.server:
            self._salt(request, tenant)
        super().add_request(request)
        try:
            if bad is not None:
                raise bad
            self._claim_on_arrival(request, tenant)
        except Exception as e:  # noqa: BLE001 - no claim may reach the engine core's loop
            msg = e.args[0] if isinstance(e, ClaimError) and e.args else (
                f"{type(e).__name__}: {e}")
            if isinstance(e, ClaimRejected):
                self._fail(request, f"kvclaims: claim rejected: {str(msg)[:300]}")
                return
            self.arbiter.count("bad_input")
            self._fail(request, f"kvclaims: bad claim: {str(msg)[:300]}")

    def _fail(self, request: Any, reason: str) -> None:
        """End this request with an error at the next output (it never runs)."""
        logger.info("kvclaims: request %s ends: %s", request.request_id, reason)
        self._errors[request.request_id] = reason
        self._held.pop(request.request_id, None)
        va.remove_waiting(self, [request])

    def _tenant_of(self, request: Any) -> Optional[str]:
        """Who the request is (TenantIdentity.resolve); ClaimError when it names itself
        and is not believed."""
        return self.identity.resolve(va.request_extra_args(request))

    def _salt(self, request: Any, tenant: Optional[str]) -> None:
        """Server identity: the request hashes under its tenant's namespace of the salt it
        sent (model.tenancy.tenant_salt), so no other tenant's request, whatever salt it
        sends, hits its blocks. The client's salt is kept for the claim's check."""
        client = va.request_cache_salt(request)
        va.set_cache_salt(request, tenant_salt(tenant, client))
        request.kvclaims_client_salt = client

    def _claim_on_arrival(self, request: Any, tenant: Optional[str]) -> None:
        extra = va.request_extra_args(request)
        if not any(isinstance(k, str) and k.startswith("kvclaims_") for k in extra):
            return
        arb = self.arbiter
        hashes = va.request_block_hashes(request)
        hashed = va.request_cache_salt(request)
        salt = getattr(request, "kvclaims_client_salt", hashed)
        spec = parse_claim(extra, hashes, salt, self.block_size, self._model_id, tenant,
                           hashed)
        release = extra.get(RELEASE_KEY)
        if release is not None:
            if not isinstance(release, str) or release not in arb.claims:
                shown = release if _int(release) else repr(str(release)[:80])
                raise ClaimError(f"{RELEASE_KEY}: unknown claim {shown}")
            actor = tenant or ""
            arb.release(release, actor)
            c = arb.claims.get(release)     # gone at once when ended records are not kept
            if c is not None and c.status in RESPONSIBLE:   # release_denied emitted
                raise ClaimError(f"{RELEASE_KEY}: tenant {actor!r} may not release "
                                 f"claim {release!r}: only its owner may")
        if spec is None:
            return
        decision = arb.claim_object(spec, hashes[:spec.footprint_blocks], salt=hashed)
        if not decision.accepted:
            raise ClaimRejected(decision.reason)

    # --- arbitration --------------------------------------------------------------------------

    def _blocks(self, request: Any) -> int:
        return -(-request.num_tokens // self.block_size)

    def _need(self, request: Any) -> Tuple[int, int, int]:
        """(new blocks now, new blocks at its peak, live blocks at its peak): what the request
        takes from the free queue when admitted (its prompt's blocks minus prefix hits someone
        already holds, plus evictable hits it revives), what it will have taken once its
        last token's KV is written, and what it then holds. The peak decides feasibility:
        a request whose generation cannot fit beside the claims can never finish."""
        blocks, hit_tokens = va.get_computed_blocks(self.kv_cache_manager, request)
        total = self._blocks(request)
        hit = hit_tokens // self.block_size
        revive = sum(1 for b in blocks.blocks[0][:hit] if b.ref_cnt == 0) if hit else 0
        need = total - hit + revive
        peak = max(total, va.request_peak_blocks(request, self.block_size))
        return need, need + peak - total, peak

    def _waiting_heads(self) -> None:
        """Walk vLLM's waiting queue from its head while the head cannot be allocated
        beside the protected claims: such a request is deferred and held outside the
        queue, so it never blocks the requests behind it (vLLM stops its scan at the first
        request it cannot allocate)."""
        arb = self.arbiter
        while self.waiting:
            req = self.waiting.peek_request()
            if req.num_computed_tokens or req.request_id in self._errors:
                return
            if self._blocks(req) <= arb.free_blocks():
                return          # fits whatever it hits: vLLM takes it
            need, peak_new, live = self._need(req)
            if not arb.in_conflict(need):
                return
            if not arb.protected_resident:
                return          # only running requests stand in the way: vLLM waits
            r = arb.requests.get(req.request_id)
            if r is None or r.status != RS.DEFERRED:
                if not arb.defer(req.request_id, need, live, peak_new):
                    return
            # else: requeued once it fitted, but vLLM did not take it before the pool
            # changed again: it is still deferred (its wait keeps counting), held again
            va.remove_waiting(self, [req])
            self._held[req.request_id] = req

    def _arbitrate_held(self) -> None:
        arb = self.arbiter
        requeue = []
        for rid, req in list(self._held.items()):
            need, peak_new, live = self._need(req)
            if (arb.in_conflict(need) and arb.infeasible(peak_new)
                    and arb.policy.demote_on_conflict):
                for cid in arb.blocking_claims():
                    if arb.in_conflict(need) or arb.infeasible(peak_new):
                        arb.demote(cid, rid, need, force=True)
            if not arb.in_conflict(need):
                del self._held[rid]
                requeue.append(req)
                continue
            waited = arb.clock - arb.requests[rid].deferred_at
            if arb.infeasible(peak_new) and not self._waits_for_expiry(waited):
                why = (f"infeasible: protected {arb.protected_resident} + {peak_new} > usable "
                       f"{arb.usable}")
            elif waited >= self.max_defer_steps:
                why = f"waited {waited} steps (bound {self.max_defer_steps})"
            else:
                continue
            refused = arb.refuse(rid, need, live, peak_new, reason=why)
            if refused is not None:
                named = ", ".join(refused.named) or "none"
                self._fail(req, f"kvclaims: refused: blocking claims {named} ({why})")
        for req in reversed(requeue):           # oldest ends up first
            va.requeue_waiting(self, req)

    def _waits_for_expiry(self, waited: int) -> bool:
        """Every claim in the way expires by itself: wait for it, within the bound."""
        arb = self.arbiter
        blocking = arb.blocking_claims()
        return bool(blocking) and waited < self.max_defer_steps and all(
            arb.claims[c].spec.protection_mode == Mode.EXPIRING for c in blocking)

    def schedule(self, *args: Any, **kwargs: Any) -> Any:
        if not self.kvclaims_auto:          # driven step by step from outside (refinement)
            return super().schedule(*args, **kwargs)
        arb = self.arbiter
        self.kvclaims_steps += 1
        if self.kvclaims_tick_per_step:
            arb.tick()
        if self._held:
            self._arbitrate_held()
        self._waiting_heads()
        out = super().schedule(*args, **kwargs)
        if arb.has_unnamed_losses():
            arb.charge_losses(self._block_owners(out))
        for rid in va.scheduled_new_request_ids(out):
            self._admitted(rid)
        for rid in va.scheduled_resumed_request_ids(out):
            self._admitted(rid)
        arb.flush(cause="schedule")
        return out

    def _block_owners(self, out: Any):
        """Block id -> the request scheduled in this step that holds it: the allocation
        that evicted a block is the one it was handed to. Built only when an object lost a
        block (no wrapper on vLLM's per-request allocation path)."""
        owner: Dict[int, str] = {}
        for rid in va.scheduled_request_ids(out):
            for bid in va.request_block_ids(self.kv_cache_manager, rid):
                owner[bid] = rid
        return owner.get

    def _preempt_request(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        """vLLM takes a running request's blocks back: pending again for the ledger."""
        out = super()._preempt_request(request, *args, **kwargs)
        if self.kvclaims_auto:
            self.arbiter.preempted(request.request_id)
        return out

    def _admitted(self, rid: str) -> None:
        req = self.requests.get(rid)
        if req is None or self.arbiter.request(rid).status == RS.RUNNING:
            return
        live = len(va.request_block_ids(self.kv_cache_manager, rid))
        hit = va.request_cached_tokens(req) // self.block_size
        self.arbiter.admitted(rid, live, not va.denies_future_reuse(req), hit)

    def update_from_output(self, scheduler_output: Any, model_runner_output: Any) -> Any:
        outs = super().update_from_output(scheduler_output, model_runner_output)
        if not self.kvclaims_auto:
            return outs
        for rid in va.finished_request_ids(outs):
            self._ended(rid)
        if self._errors:
            errors, self._errors = self._errors, {}
            for rid in va.finish_with_error(self, list(errors), errors, outs):
                self._ended(rid)
        return outs

    def _ended(self, rid: str) -> None:
        arb = self.arbiter
        r = arb.requests.get(rid)
        if r is not None and r.status == RS.REFUSED:
            pass        # the refusal stays on record (the ledger retired it, bounded)
        elif not arb.finished(rid):
            arb.forget_request(rid)
        self._held.pop(rid, None)

    def finish_requests(self, request_ids: Any, finished_status: Any) -> Any:
        done = super().finish_requests(request_ids, finished_status)
        for req in done if self.kvclaims_auto else ():
            self._ended(req.request_id)
        return done

    def get_num_unfinished_requests(self) -> int:
        return super().get_num_unfinished_requests() + len(self._held) + len(self._errors)

    def shutdown(self) -> None:
        """The engine stops: the telemetry run is closed (run_closed), then vLLM's own."""
        try:
            self.arbiter.close_run()
            self.arbiter.telemetry.close()
        finally:
            super().shutdown()

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
