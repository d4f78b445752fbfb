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

import functools
from typing import Any, Dict, List, Optional, Tuple

from kvclaims.model.telemetry import Telemetry
from kvclaims.spec.actions import Step, complete_choices
from kvclaims.spec.policy import Naming, Policy
from kvclaims.spec.state import Config
from kvclaims.spec.vocab import ClaimStatus, RequestStatus

from . import vllm_adapter as va
from .check import _slot
from .model_target import claim_spec
from .target import Applied, spec_steps
from .vllm_arbiter import ClaimArbiter
from .vllm_core import BLOCK_SIZE, VllmCore, object_token_ids

TARGETS = ("vllm-core", "vllm-engine", "vllm-patched", "vllm-patched-engine")


@functools.lru_cache(maxsize=4096)
def object_hashes(oid: str, footprint: int, identity: int) -> Tuple[bytes, ...]:
    """vLLM's block hashes of object `oid` (its prompt, hashed by vLLM's own hasher): fixed by
    the arguments, so computed once per process rather than once per run (a run is a few
    dozen steps; generating and hashing the prompt cost more than replaying them)."""
    tokens = object_token_ids(oid, footprint, BLOCK_SIZE)
    probe = va.make_request(f"probe:{oid}", tokens, block_size=BLOCK_SIZE,
                            cache_salt=salt(identity))
    return tuple(va.request_block_hashes(probe))


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
                                    headroom=cfg.headroom,
                                    telemetry=Telemetry(run_id=self.run_id),
                                    block_size=BLOCK_SIZE)
        for i, cc in enumerate(cfg.claims):
            oid = f"obj{i}"
            self.arb.register_object(oid, list(object_hashes(oid, cc.footprint, cc.identity)),
                                     owner=f"tenant{cc.owner}", salt=salt(cc.identity))
        self._seen = 0
        self._waited: Dict[int, int] = {}     # request slot -> ticks waited while answerable

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
            r = arb.requests.get(self._rid(j))
            rid = f"r{j}"
            out[f"requests[{j}].status"] = int(r.status) if r else int(RequestStatus.NONE)
            out[f"requests[{j}].live"] = (
                len(va.request_block_ids(self.driver.manager, live[rid])) if rid in live else 0)
            out[f"requests[{j}].admit"] = r.admit if r else True
            out[f"requests[{j}].named"] = tuple(
                f"c{i}" in (r.named if r else ()) for i in range(cfg.K))
        return out

    def _rid(self, j: int) -> str:
        """The id the arbiter knows request j by."""
        return f"r{j}"

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
        """A tick; on the patched arbiter with bounded response (O14), a deferred request it
        could answer (it fits, or it is infeasible) that has waited response_ticks ticks is
        answered first (demotable claims in its way demoted under hard_demote, then served,
        else refused), each answer reported as a step of its own before the tick."""
        decided: List[Step] = []
        if self.patched and self.policy.bounded_response:
            for j in self._deferred():
                if self._answerable(j) and self._waited.get(j, 0) >= self.cfg.response_ticks:
                    decided += self._answer(j)
            for j in self._deferred():
                if self._answerable(j):
                    self._waited[j] = self._waited.get(j, 0) + 1
        self.arb.tick()
        if not decided:
            return Applied(True)
        return Applied(True, decided=tuple(decided) + (Step("tick", (), ()),))

    def _deferred(self) -> List[int]:
        return [j for j in range(self.cfg.R) if getattr(
            self.arb.requests.get(self._rid(j)), "status", None) == RequestStatus.DEFERRED]

    def _answerable(self, j: int) -> bool:
        need = self.cfg.requests[j].need
        return not self.arb.in_conflict(need) or self.arb.infeasible(need)

    def _answer(self, j: int) -> List[Step]:
        """Answer deferred request j now, the spec steps it took in order: the target's own
        demote/admit/refuse steps (on the engine each runs a scheduler step, whose decisions
        are the answer)."""
        out: List[Step] = []
        asks = [Step("demote", (j, i), ()) for i in range(self.cfg.K)]
        asks += [Step("admit", (j,), (("admit", True),)), Step("refuse", (j,), ())]
        for ask in asks:
            if j not in self._deferred():
                break
            out += spec_steps(ask, self.apply(ask))
        return out

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
        ok = bool((self.arb.defer if a == "defer" else self.arb.refuse)(rid, need))
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
        r = self.arb.requests.get(self._rid(j))
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
        self.arb.emit("prefix_hit", request_id=rid, object_id=oid,
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


# Request ids of the helper requests a target runs to play a spec step that is not a request
# of the spec (the spec's materialize: a one-token request over the object's prompt). They are
# not spec requests: the abstraction function drops their request-level events.
HELPER_PREFIXES = ("materialize:",)
_REQUEST_EVENTS = ("conflict", "request_admitted", "request_deferred", "request_refused",
                   "request_finished")


def _helper(e: Dict[str, Any]) -> bool:
    rid = e.get("request_id")
    return (isinstance(rid, str) and rid.startswith(HELPER_PREFIXES)
            and (e["type"] in _REQUEST_EVENTS or e["type"].startswith("request_")))


def _slot_of(rid: Any) -> Optional[int]:
    if isinstance(rid, str) and rid.startswith("r") and rid[1:].isdigit():
        return int(rid[1:])
    return None


class VllmPatchedEngineTarget(_VllmTarget):
    """The live engine with ClaimScheduler making every request decision, driven as vLLM is
    driven (add a request, ``step()``), each decision matched to a spec step.

    - A spec step ``admit``/``defer``/``refuse``/``demote`` for request j adds ``r{j}`` to
      the engine if it is not there yet (a fresh prompt of ``need`` blocks; no-admit when the
      step says ``admit=False``) and runs one engine step. Whatever the scheduler decided in
      that step (for r_j or for a request it held from an earlier step) is read off the
      step's telemetry and reported as spec steps (``Applied.decided``), in order:
      ``request_deferred`` -> ``defer(j)``, ``request_refused`` -> ``refuse(j)``,
      ``claim_demoted`` naming r_j -> ``demote(j, i)``, ``request_admitted`` -> ``admit(j)``
      with ``admit`` from the event and ``take[i]``/``head[i]`` from the victim events the
      ledger charges to that request (``take_cached`` read physically, the pool's ordinary
      cache before and after, when it was the step's only allocation; else left to the
      checker, see ``check.complete_decided``). The requested step is taken when it is one of
      those decisions. A deferred request is held by the scheduler; a later step for it runs
      the engine again, which lets the scheduler re-arbitrate it (refuse it when infeasible
      under hard_refuse, demote the claims in its way under hard_demote, requeue it when it
      fits). A request vLLM leaves in its waiting queue (only running requests in its way)
      stays there; it is admitted at a later engine step, reported then.
    - The spec's clock: ``kvclaims_tick_per_step = False`` and a spec ``tick`` ticks the
      arbiter (expiry events); engine steps do not.
    - The bounded wait (a deferred request refused after ``max_defer_steps``): the target
      sets it to the configuration's ``response_ticks`` (O14), counted in spec ticks; a tick
      that would pass a deferred request the scheduler could answer runs an engine step
      first, in which the scheduler answers it (``_do_tick``). Out of reach (10**9) for a
      policy without bounded response.
    - Parking (``_Parking``): only the request a step is about runs; other running requests
      keep their blocks and do not decode, so a request's live blocks are its prompt. The
      scheduler is told so: while this target's arbiter is in place, ``_need`` reports a
      request's peak as its prompt (a server judges it with ``max_tokens``).
    - Helper requests (``materialize:obj{i}``, the spec's materialize) are not spec
      requests: their request-level events are dropped by the abstraction function.
    - Claim lifecycle steps (``submit``/``accept``/``reject``/``release``) and ``tick`` are
      taken on the ledger directly (the spec separates submission from acceptance; a live
      request carrying a claim does both at arrival), and ``finish`` aborts the request
      through the engine (vLLM's abort path; the scheduler ends it in the ledger).

    No forced choice is left: ``kvclaims_auto`` stays on. Tests that need the arbiter driven
    through one specific choice use ``vllm-patched`` (the same arbiter over vLLM's core)."""

    name = "vllm-patched-engine"
    patched = True
    MAX_DEFER_STEPS = 10 ** 9

    def _build(self, num_blocks: int, policy: Policy) -> None:
        eng = shared_engine("patched", num_blocks)
        for rid in list(getattr(eng, "kvclaims_pending", ())):   # the previous run's
            eng._abort(rid)
        eng.kvclaims_pending = set()
        sched = eng.scheduler
        self.arb = sched.kvclaims_reset(policy, self.cfg.cap, Telemetry(run_id=self.run_id),
                                        headroom=self.cfg.headroom)
        sched.kvclaims_auto = True
        sched.kvclaims_tick_per_step = False
        # the scheduler's bounded wait, in the spec's ticks (its clock: tick_per_step off) is
        # the configuration's response_ticks (O14); out of reach for a policy without one
        sched.max_defer_steps = (self.cfg.response_ticks if policy.bounded_response
                                 else self.MAX_DEFER_STEPS)
        sched._need = _prompt_peak(sched, self.arb)
        eng.reset_pool()
        eng.salts = {f"r{j}": salt(rc.identity) for j, rc in enumerate(self.cfg.requests)}
        self.driver = eng
        self._internal: Dict[str, str] = {}      # r{j} -> the engine's request id
        self._external: Dict[str, str] = {}

    def _rid(self, j: int) -> str:
        rid = f"r{j}"
        return self._internal.get(rid, rid)

    def _ours(self, e: Dict[str, Any]) -> Dict[str, Any]:
        """An event with the engine's internal request id (``r0-<suffix>``) as the spec
        request's id (``r0``)."""
        rid = e.get("request_id")
        if rid is None or rid not in self._external:
            return e
        return {**e, "request_id": self._external[rid]}

    def new_events(self) -> List[Dict[str, Any]]:
        return [self._ours(e) for e in super().new_events() if not _helper(e)]

    def events(self) -> List[Dict[str, Any]]:
        return [self._ours(e) for e in self.arb.telemetry.events if not _helper(e)]

    # --- the scheduler's decisions -------------------------------------------------------------

    def _engine_step(self, run) -> Tuple[Tuple[Step, ...], Any]:
        """Run ``run()`` (which steps the engine once) and read the scheduler's decisions off
        the telemetry of that step."""
        before = self._resident()
        _, cached_before = self._free_split()
        mark = len(self.arb.telemetry.events)
        out = run()
        evs = [self._ours(e) for e in self.arb.telemetry.events[mark:]]
        _, cached_after = self._free_split()
        allocations = sum(1 for e in self.arb.telemetry.events[mark:]
                          if e["type"] == "request_admitted")
        decided: List[Step] = []
        victims: Dict[str, List[Dict[str, Any]]] = {}
        pos = {i: list(ps) for i, ps in before.items()}
        for e in evs:
            t, j = e["type"], _slot_of(e.get("request_id"))
            if t == "victim":
                victims.setdefault(e.get("request_id"), []).append(e)
                continue
            rid = e.get("request_id")
            if t == "request_admitted" and isinstance(rid, str) and rid.startswith(
                    "materialize:obj"):          # the helper that plays the spec's materialize
                i = rid[len("materialize:obj"):].split("-")[0]
                decided.append(Step("materialize", (int(i),), ()))
                continue
            if j is None:
                continue
            rid = f"r{j}"
            if t == "request_deferred":
                decided.append(Step("defer", (j,), self._naming(e)))
            elif t == "request_refused":
                decided.append(Step("refuse", (j,), self._naming(e)))
                self.driver.kvclaims_pending.discard(rid)
            elif t == "claim_demoted":
                decided.append(Step("demote", (j, _slot(e["claim_id"])), ()))
            elif t == "request_admitted":
                ch: List[Tuple[str, Any]] = [("admit", bool(e.get("admit_future_reuse", True)))]
                mine = victims.pop(rid, [])
                heads = []
                for i in range(self.cfg.K):
                    gone = sorted(v["logical_position"] for v in mine
                                  if v.get("object_id") == f"obj{i}")
                    ps = pos[i]
                    tail = not gone or ps[len(ps) - len(gone):] == gone
                    ch.append((f"take[{i}]", len(gone)))
                    heads.append((f"head[{i}]",
                                  bool(gone) and not tail and ps[:len(gone)] == gone))
                    pos[i] = [p for p in ps if p not in set(gone)]
                ch.append(("take_cached", cached_before - cached_after
                           if allocations == 1 else None))
                decided.append(Step("admit", (j,), tuple(ch + heads)))
                if rid in self._internal:
                    self.driver.live[rid] = self._internal[rid]
                self.driver.kvclaims_pending.discard(rid)
        return tuple(decided), out

    def _naming(self, e: Dict[str, Any]) -> Tuple[Tuple[str, Any], ...]:
        if self.policy.naming == Naming.EXACT:
            return ()
        named = {str(c) for c in e.get("blocking_claim_ids") or ()}
        return tuple((f"name[{i}]", f"c{i}" in named) for i in range(self.cfg.K))

    def _request_step(self, a: str, sl, given) -> Applied:
        j = sl[0]
        rid = f"r{j}"
        r = self.arb.requests.get(self._rid(j))
        if r is not None and r.status not in (RequestStatus.NONE, RequestStatus.DEFERRED):
            return Applied(False, note="request is not pending")
        eng = self.driver

        def run():
            if rid not in self._internal:
                admit = given.get("admit", True) if a == "admit" else True
                tokens, s = eng._prompt(rid, self.cfg.requests[j].need, None)
                extra = None if admit else {va.ADMIT_FUTURE_REUSE_KEY: False}
                try:
                    internal = eng._submit(rid, tokens, va_live_max_tokens(), extra, s)
                    self._internal[rid], self._external[internal] = internal, rid
                except va.REQUEST_REJECTED as e:
                    return f"vLLM rejected the request: {e}"
                eng.kvclaims_pending.add(rid)
            eng._step()
            return ""

        decided, note = self._engine_step(run)
        took = any(d.action == a and d.slots == tuple(sl) for d in decided)
        return Applied(took, note=note or ("" if took else "the scheduler decided otherwise"),
                       decided=decided)

    def _do_admit(self, sl, given) -> Applied:
        return self._request_step("admit", sl, given)

    def _do_defer(self, sl, given) -> Applied:
        return self._request_step("defer", sl, given)

    def _do_refuse(self, sl, given) -> Applied:
        return self._request_step("refuse", sl, given)

    def _do_demote(self, sl, given) -> Applied:
        return self._request_step("demote", sl, given)

    def _do_materialize(self, sl, given) -> Applied:
        box: Dict[str, Applied] = {}

        def run():
            box["a"] = _VllmTarget._do_materialize(self, sl, given)

        decided, _ = self._engine_step(run)
        app = box["a"]
        if any(d.action != "materialize" for d in decided):
            # the scheduler also re-arbitrated held requests in that engine step
            return Applied(app.taken, app.choices, app.note, decided)
        return app

    def _do_finish(self, sl, given) -> Applied:
        rid = f"r{sl[0]}"
        r = self.arb.requests.get(self._rid(sl[0]))
        if r is None or r.status != RequestStatus.RUNNING:
            return Applied(False, note="request is not running")
        self.driver.finish(rid)          # vLLM's abort; the scheduler ends it in the ledger
        self.driver.kvclaims_pending.discard(rid)
        return Applied(True)


def va_live_max_tokens() -> int:
    from .vllm_sched import LIVE_MAX_TOKENS

    return LIVE_MAX_TOKENS


def _prompt_peak(sched: Any, arb: Any):
    """``ClaimScheduler._need`` with a request's peak = its prompt, while ``arb`` is the
    scheduler's arbiter (the target parks running requests: they never decode past their
    prompt). After ``kvclaims_reset`` the scheduler's own judgement is back."""
    own = type(sched)._need

    def _need(request: Any) -> Tuple[int, int, int]:
        need, peak_new, live = own(sched, request)
        if sched.arbiter is not arb:
            return need, peak_new, live
        total = sched._blocks(request)
        return need, need, total

    return _need
