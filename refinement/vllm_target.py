"""vLLM as refinement targets: the abstraction function from vLLM's real pool to the spec's
state (kvclaims.spec.view.refinement_view's shape), and the spec's actions on vLLM.

Targets (names as `kvclaims refine --target` takes them):

- ``vllm-core``: stock vLLM, its own KVCacheManager/BlockPool driven directly
  (refinement/vllm_core.py). Claims are only a ledger (vLLM has none): the arbiter runs
  with the spec's ``native`` behaviour, pins nothing, emits no harm.
- ``vllm-engine``: stock vLLM, a live in-process ``vllm.LLM`` running the tiny Llama
  (refinement/vllm_engine.py), same ledger.
- ``vllm-patched``: vLLM's KVCacheManager/BlockPool with the claim arbiter
  (refinement/vllm_arbiter.py) running the policy under test (``hard_refuse``,
  ``hard_demote``): pins protected blocks, defers, refuses, demotes, expires.
- ``vllm-patched-engine``: the live engine built with the arbiter's Scheduler subclass
  (``scheduler_cls``), claims through ``SamplingParams.extra_args``.

Abstraction function (read from the real pool, never from the target's own bookkeeping):
``empty`` = free blocks carrying no hash (never used, or freed without future reuse);
``cached`` = free hashed blocks whose hash is no position of a registered object (ordinary
cache); object i's ``[lo, hi)`` = its logical positions whose hash some pool block carries
(found through vLLM's hash map); ``requests[j].live`` = the blocks vLLM holds for it.

Slot i is object ``obj{i}`` with claim ``c{i}`` (owner ``tenant{owner}``, cache identity =
vLLM cache salt ``identity-{n}``); request slot j is ``r{j}``, a fresh prompt of ``need``
full blocks. vLLM resolves the spec's nondeterminism by itself; ``apply`` reports its
choices under the spec's names, read off what physically happened: ``take_cached`` (ordinary
cached blocks it evicted), ``take[i]`` (positions of object i it evicted) and ``head[i]``
(they were the lowest resident positions, not the highest).

vLLM does no housekeeping eviction outside an allocation, so ``evict`` and
``evict_cached`` are declined (refinement is trace inclusion: declining is allowed).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from kvclaims.model.telemetry import Telemetry
from kvclaims.spec.actions import Step, complete_choices
from kvclaims.spec.policy import Naming, Policy
from kvclaims.spec.state import Config
from kvclaims.spec.vocab import ClaimStatus, RequestStatus

from . import vllm_adapter as va
from .model_target import claim_spec
from .target import Applied
from .vllm_arbiter import ClaimArbiter
from .vllm_core import BLOCK_SIZE, VllmCore, object_token_ids

TARGETS = ("vllm-core", "vllm-engine", "vllm-patched", "vllm-patched-engine")


def salt(identity: int) -> str:
    return f"identity-{identity}"


class _VllmTarget:
    """Shared by every vLLM target: subclasses build ``self.driver`` (a PoolObserver with
    materialize/admit/finish) and ``self.arb`` (the arbiter on the driver's pool)."""

    name = "vllm"
    patched = False

    def __init__(self, run_id: Optional[str] = None):
        self.run_id = run_id
        self.driver: Any = None
        self.arb: Optional[ClaimArbiter] = None

    # subclasses
    def _build(self, num_blocks: int, policy: Policy) -> None:
        raise NotImplementedError

    def _arbiter_policy(self, policy: Policy) -> Any:
        return policy if self.patched else "native"

    def reset(self, cfg: Config, policy: Policy) -> None:
        self.cfg, self.policy = cfg, policy
        self._build(cfg.usable + 1, policy)
        pool = self.driver.block_pool
        if self.arb is None:
            self.arb = ClaimArbiter(pool, policy=self._arbiter_policy(policy), cap=cfg.cap,
                                    telemetry=Telemetry(run_id=self.run_id),
                                    block_size=BLOCK_SIZE)
        for i, cc in enumerate(cfg.claims):
            oid = f"obj{i}"
            tokens = object_token_ids(oid, cc.footprint, BLOCK_SIZE)
            probe = va.make_request(f"probe:{oid}", tokens, block_size=BLOCK_SIZE,
                                    cache_salt=salt(cc.identity))
            self.arb.register_object(oid, va.request_block_hashes(probe),
                                     owner=f"tenant{cc.owner}", salt=salt(cc.identity))
        self._seen = 0

    # --- the abstraction function -------------------------------------------------------------

    def _free_split(self) -> Tuple[int, int]:
        """(empty, cached): free blocks without a hash, and free hashed blocks of no object."""
        empty = cached = 0
        for b in self.driver.block_pool.blocks:
            if b.ref_cnt != 0 or b.is_null:
                continue
            h = va.pool_block_hash(b)
            if h is None:
                empty += 1
            elif h not in self.arb._where:
                cached += 1
        return empty, cached

    def view(self) -> Dict[str, Any]:
        arb, cfg = self.arb, self.cfg
        empty, cached = self._free_split()
        out: Dict[str, Any] = {"clock": arb.clock, "empty": empty, "cached": cached}
        for i in range(cfg.K):
            lo, hi = arb.interval(f"obj{i}")
            c = arb.claims.get(f"c{i}")
            out[f"claims[{i}].lo"] = lo
            out[f"claims[{i}].hi"] = hi
            out[f"claims[{i}].status"] = int(c.status) if c else int(ClaimStatus.NONE)
        live = self.driver._live_ids()
        for j in range(cfg.R):
            r = arb.requests.get(f"r{j}")
            rid = f"r{j}"
            out[f"requests[{j}].status"] = int(r.status) if r else int(RequestStatus.NONE)
            out[f"requests[{j}].live"] = (
                len(va.request_block_ids(self.driver.manager, live[rid])) if rid in live else 0)
            out[f"requests[{j}].admit"] = r.admit if r else True
            out[f"requests[{j}].named"] = tuple(
                f"c{i}" in (r.named if r else ()) for i in range(cfg.K))
        return out

    def events(self) -> List[Dict[str, Any]]:
        return self.arb.telemetry.events

    def new_events(self) -> List[Dict[str, Any]]:
        evs = self.arb.telemetry.events[self._seen:]
        self._seen = len(self.arb.telemetry.events)
        return evs

    # --- steps --------------------------------------------------------------------------------

    def _resident(self) -> Dict[int, List[int]]:
        out = {}
        for i in range(self.cfg.K):
            res = self.arb.resident_positions(self.arb.objects[f"obj{i}"])
            out[i] = [p for p, r in enumerate(res) if r]
        return out

    def _victim_choices(self, before, after, cached_taken) -> Tuple[Tuple[str, Any], ...]:
        K = self.cfg.K
        out: List[Tuple[str, Any]] = [("take_cached", cached_taken)]
        heads = []
        for i in range(K):
            gone = sorted(set(before[i]) - set(after[i]))
            out.append((f"take[{i}]", len(gone)))
            ps = before[i]
            tail = not gone or ps[len(ps) - len(gone):] == gone
            heads.append((f"head[{i}]", bool(gone) and not tail and ps[:len(gone)] == gone))
        return tuple(out + heads)

    def apply(self, step: Step) -> Applied:
        given = complete_choices(self.cfg, self.policy, step)
        a, sl = step.action, step.slots
        handler = getattr(self, f"_do_{a}", None)
        if handler is None:
            raise ValueError(f"unknown action {a}")
        return handler(sl, given)

    def _do_submit(self, sl, given) -> Applied:
        d = self.arb.submit(claim_spec(self.cfg, sl[0]), decide=False)
        return Applied(d.reason == "pending", note=d.reason)

    def _do_accept(self, sl, given) -> Applied:
        return Applied(self.arb.accept(f"c{sl[0]}"))

    def _do_reject(self, sl, given) -> Applied:
        return Applied(self.arb.reject(f"c{sl[0]}", "operator"))

    def _do_materialize(self, sl, given) -> Applied:
        i = sl[0]
        cc = self.cfg.claims[i]
        oid = f"obj{i}"
        empty, _ = self._free_split()
        if any(self.arb.resident_positions(self.arb.objects[oid])):
            return Applied(False, note="object already (partly) resident")
        if empty < cc.footprint:
            return Applied(False, note="not enough free unhashed blocks to store the object")
        try:
            res = self.driver.materialize(oid, cc.footprint, salt=salt(cc.identity))
        except va.REQUEST_REJECTED as e:   # the engine rejects a prompt longer than its max length
            return Applied(False, note=f"vLLM rejected the request: {e}")
        if not res.admitted:
            return Applied(False, note="vLLM could not allocate the object")
        self.arb.settle(f"materialize:{oid}")
        return Applied(True)

    def _do_admit(self, sl, given) -> Applied:
        j = sl[0]
        rid = f"r{j}"
        r = self.arb.request(rid)
        if r.status not in (RequestStatus.NONE, RequestStatus.DEFERRED):
            return Applied(False, note="request is not pending")
        need = self.cfg.requests[j].need
        before = self._resident()
        _, cached_before = self._free_split()
        try:
            res = self._admit(rid, need, given["admit"])
        except va.REQUEST_REJECTED as e:   # the engine rejects a prompt longer than its max length
            return Applied(False, note=f"vLLM rejected the request: {e}")
        if not res.admitted:
            return Applied(False, note="vLLM could not allocate it")
        after = self._resident()
        _, cached_after = self._free_split()
        self.arb.admitted(rid, len(res.block_ids), given["admit"], res.hit_blocks)
        return Applied(True, (("admit", given["admit"]),)
                       + self._victim_choices(before, after, cached_before - cached_after))

    def _admit(self, rid: str, need: int, admit: bool):
        return self.driver.admit(rid, need, admit_future_reuse=admit)

    def _do_finish(self, sl, given) -> Applied:
        rid = f"r{sl[0]}"
        r = self.arb.requests.get(rid)
        if r is None or r.status != RequestStatus.RUNNING:
            return Applied(False, note="request is not running")
        self.driver.finish(rid)
        self.arb.finished(rid)
        return Applied(True)

    def _do_evict(self, sl, given) -> Applied:
        return Applied(False, note="vLLM evicts only to allocate")

    def _do_evict_cached(self, sl, given) -> Applied:
        return Applied(False, note="vLLM evicts only to allocate")

    def _do_tick(self, sl, given) -> Applied:
        self.arb.tick()
        return Applied(True)

    def _do_release(self, sl, given) -> Applied:
        actor = given["actor"]
        return Applied(self.arb.release(f"c{sl[0]}", f"tenant{actor}"), (("actor", actor),))

    def _do_demote(self, sl, given) -> Applied:
        if not self.patched:
            return Applied(False, note="stock vLLM has no claims to demote")
        j, i = sl
        return Applied(self.arb.demote(f"c{i}", f"r{j}", self.cfg.requests[j].need))

    def _hold(self, a: str, j: int) -> Applied:
        if not self.patched:
            return Applied(False, note=f"stock vLLM does not {a} on claims")
        rid, need = f"r{j}", self.cfg.requests[j].need
        ok = (self.arb.defer if a == "defer" else self.arb.refuse)(rid, need)
        if not ok or self.policy.naming == Naming.EXACT:
            return Applied(ok)
        named = self.arb.requests[rid].named
        return Applied(True, tuple((f"name[{i}]", f"c{i}" in named) for i in range(self.cfg.K)))

    def _do_defer(self, sl, given) -> Applied:
        return self._hold("defer", sl[0])

    def _do_refuse(self, sl, given) -> Applied:
        return self._hold("refuse", sl[0])

    def _do_reuse(self, sl, given) -> Applied:
        """A lookup of object i's prefix under request j's cache identity (vLLM's own
        get_computed_blocks), without allocating: the spec's reuse changes no state."""
        j, i = sl
        rid = f"r{j}"
        r = self.arb.requests.get(rid)
        if r is not None and r.status != RequestStatus.NONE:
            return Applied(False, note="request is not pending")
        oid = f"obj{i}"
        tokens = object_token_ids(oid, self.cfg.claims[i].footprint, BLOCK_SIZE)
        tokens = tokens + [1] * BLOCK_SIZE     # past the prefix: every cached block can hit
        probe = va.make_request(f"lookup:{rid}", tokens, block_size=BLOCK_SIZE,
                                cache_salt=salt(self.cfg.requests[j].identity))
        _, hit_tokens = va.get_computed_blocks(self.driver.manager, probe)
        if hit_tokens <= 0:
            return Applied(False, note="no prefix hit")
        self.arb._emit("prefix_hit", request_id=rid, object_id=oid,
                       blocks=hit_tokens // BLOCK_SIZE)
        return Applied(True)


class _CoreDriver(VllmCore):
    """VllmCore whose requests carry the spec's cache identity as vLLM cache salt."""

    salts: Dict[str, str]

    def admit(self, request_id, n_blocks, admit_future_reuse=True, prefix_object=None):
        tokens, _ = self._prompt(request_id, n_blocks, prefix_object)
        req, result = self._run(request_id, tokens, cache=admit_future_reuse,
                                salt=self.salts.get(request_id))
        if result.admitted:
            self.live[request_id] = req
        return result


class VllmCoreTarget(_VllmTarget):
    name = "vllm-core"

    def _build(self, num_blocks: int, policy: Policy) -> None:
        self.driver = _CoreDriver(num_blocks)
        self.driver.salts = {f"r{j}": salt(rc.identity)
                             for j, rc in enumerate(self.cfg.requests)}
        self.arb = None


class VllmPatchedTarget(VllmCoreTarget):
    name = "vllm-patched"
    patched = True


# --- the live engine ---------------------------------------------------------------------------

_ENGINES: Dict[Tuple[str, int], Any] = {}


def shared_engine(kind: str, num_blocks: int, policy: str = "native", cap: int = 0):
    """One engine per (kind, pool size) per process (building one takes seconds): later
    resets reuse it after clearing its prefix cache (``reset_prefix_cache``)."""

    key = (kind, num_blocks)
    eng = _ENGINES.get(key)
    if eng is None:
        if kind == "patched":
            from .vllm_patched_engine import PatchedEngine
            eng = PatchedEngine(num_blocks)
        else:
            eng = _ParkedEngine(num_blocks)
        _ENGINES[key] = eng
    return eng


class _Parking:
    """Stepped drivers decode every running request at every step, so a live request of n
    full blocks would take block n + 1 at the next step (VLLM-FACTS section 5) -- a
    transition the spec has no action for. The targets step only the request a spec
    action is about; the others keep their blocks and wait (vLLM's own running list,
    restored right after the step)."""

    _keep: set

    def _submit(self, request_id, token_ids, max_tokens, extra_args, salt):
        internal = super()._submit(request_id, token_ids, max_tokens, extra_args, salt)
        self._keep = {internal}
        return internal

    def _step(self):
        parked = va.park_running(self.scheduler, getattr(self, "_keep", set()))
        try:
            return super()._step()
        finally:
            va.unpark_running(self.scheduler, parked)
            self._keep = set()

    def reset_pool(self) -> None:
        """Finish every live request and empty the prefix cache (a fresh pool)."""
        for rid in list(self.live):
            self.finish(rid)
        self._drain()
        if not self.block_pool.reset_prefix_cache():
            raise RuntimeError("engine pool still in use")
        self._events.clear()
        self._unobserved = 0
        self.registry = type(self.registry)()

    def _prompt(self, request_id, n_blocks, prefix_object):
        tokens, s = super()._prompt(request_id, n_blocks, prefix_object)
        return tokens, (s if prefix_object else getattr(self, "salts", {}).get(request_id))


def _parked_engine_cls():
    from .vllm_engine import VllmEngine

    class ParkedEngine(_Parking, VllmEngine):
        salts: Dict[str, str] = {}

    return ParkedEngine


def _ParkedEngine(num_blocks: int):
    return _parked_engine_cls()(num_blocks)


class VllmEngineTarget(_VllmTarget):
    """Stock vLLM engine. The pool is reset between runs (one engine per process)."""

    name = "vllm-engine"

    def _build(self, num_blocks: int, policy: Policy) -> None:
        self.driver = shared_engine("stock", num_blocks)
        self.driver.reset_pool()
        self.driver.salts = {f"r{j}": salt(rc.identity)
                             for j, rc in enumerate(self.cfg.requests)}
        self.arb = None   # a new ledger; its eviction hook replaces the previous one


class VllmPatchedEngineTarget(_VllmTarget):
    """The live engine with ClaimScheduler, driven by spec steps: the scheduler's own
    arbitration is switched off (``kvclaims_auto = False``: no tick per engine step, no
    automatic deferral) and the target takes each lifecycle step on its arbiter, so every
    spec step is exactly one thing on the engine. The automatic path is tested live."""

    name = "vllm-patched-engine"
    patched = True

    def _build(self, num_blocks: int, policy: Policy) -> None:
        eng = shared_engine("patched", num_blocks)
        self.arb = eng.scheduler.kvclaims_reset(policy, self.cfg.cap,
                                                Telemetry(run_id=self.run_id))
        eng.scheduler.kvclaims_auto = False
        eng.reset_pool()
        eng.salts = {f"r{j}": salt(rc.identity) for j, rc in enumerate(self.cfg.requests)}
        self.driver = eng

    def _admit(self, rid: str, need: int, admit: bool):
        from .vllm_core import AdmitResult

        if self.arb.in_conflict(need):       # it would wait in vLLM's queue: not taken now
            return AdmitResult(rid, False, (), 0, 0)
        return self.driver.admit(rid, need, admit_future_reuse=admit)
