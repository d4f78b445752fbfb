"""The MicroRuntime as a refinement target, and the abstraction function from its block-level
state to the spec's state (kvclaims.spec.view.refinement_view's shape).

Slot i of a spec Config is object "obj{i}" with claim "c{i}" (owner "tenant{owner}", cache
identity "identity-{identity}"); request slot j is "r{j}", a prompt of `need` fresh blocks.
The runtime resolves the spec's nondeterminism by itself (free blocks first, then LRU order,
tail first); `apply` reports the choices it made under the spec's choice names, read off what
physically happened (which positions of which objects it lost)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from kvclaims.model.claims import CacheIdentity, ClaimSpec, Predicate
from kvclaims.model.runtime import MicroRuntime, RuntimeUsageError
from kvclaims.model.telemetry import Telemetry
from kvclaims.spec.actions import Step, complete_choices
from kvclaims.spec.policy import Naming, Policy
from kvclaims.spec.state import Config, NO_DURATION
from kvclaims.spec.vocab import ClaimStatus, Feasibility, Mode

from .target import Applied

BLOCK_SIZE = 16
FEASIBILITY_BY_NAME = {"wait": Feasibility.WAIT, "infeasible": Feasibility.INFEASIBLE}


def object_tokens(i: int, n_blocks: int) -> List[int]:
    return [1_000_000 * (i + 1) + t for t in range(n_blocks * BLOCK_SIZE)]


def request_tokens(j: int, n_blocks: int) -> List[int]:
    return [-1_000_000 * (j + 1) - t for t in range(n_blocks * BLOCK_SIZE)]


def identity(n: int) -> CacheIdentity:
    return CacheIdentity(salt_namespace=f"identity-{n}", block_size=BLOCK_SIZE)


def claim_spec(cfg: Config, i: int) -> ClaimSpec:
    cc = cfg.claims[i]
    return ClaimSpec(claim_id=f"c{i}", owner_scope=f"tenant{cc.owner}",
                     cache_identity=identity(cc.identity), object_id=f"obj{i}",
                     predicate=Predicate(cc.pred_start, cc.pred_len),
                     footprint_blocks=cc.footprint, protection_mode=Mode(cc.mode),
                     duration=None if cc.duration == NO_DURATION else cc.duration)


@dataclass(frozen=True)
class _Lost:
    """A victim as _victim_choices reads it (object slot name, logical position)."""
    object_id: Optional[str]
    position: Optional[int]


def slot_of(name: Optional[str]) -> Optional[int]:
    """"c3" / "r1" / "obj2" -> 3 / 1 / 2."""
    if name is None:
        return None
    return int(name.lstrip("cobjr"))


class ModelTarget:
    name = "model"

    def __init__(self, run_id: Optional[str] = None):
        self.run_id = run_id
        self.rt: Optional[MicroRuntime] = None

    def reset(self, cfg: Config, policy: Policy) -> None:
        self.cfg, self.policy = cfg, policy
        self.rt = MicroRuntime(cfg.usable + 1, policy, protected_cap_blocks=cfg.cap,
                               headroom_blocks=cfg.headroom,
                               response_ticks=(cfg.response_ticks if policy.bounded_response
                                               else None),
                               block_size=BLOCK_SIZE, telemetry=Telemetry(run_id=self.run_id))
        for i, cc in enumerate(cfg.claims):
            self.rt.register_object(f"obj{i}", object_tokens(i, cc.footprint),
                                    identity(cc.identity))
        for j, rc in enumerate(cfg.requests):
            self.rt.new_request(f"r{j}", request_tokens(j, rc.need), identity(rc.identity))
        self._seen = 0

    # --- steps ------------------------------------------------------------------------------------

    def apply(self, step: Step) -> Applied:
        rt, K = self.rt, self.cfg.K
        given = complete_choices(self.cfg, self.policy, step)
        a, sl = step.action, step.slots
        try:
            if a == "submit":
                d = rt.submit_claim(claim_spec(self.cfg, sl[0]), decide=False)
                return Applied(d.reason == "pending", note=d.reason)
            if a == "accept":
                return Applied(rt.accept(f"c{sl[0]}"))
            if a == "reject":
                return Applied(rt.reject(f"c{sl[0]}", "operator"))
            if a == "materialize":
                return Applied(rt.materialize(f"obj{sl[0]}"))
            if a == "admit":
                before = self._intervals()
                res = rt.admit(f"r{sl[0]}", admit_future_reuse=given["admit"])
                if not res.taken:
                    return Applied(False, note=res.note)
                return Applied(True, (("admit", res.admit_future_reuse),)
                               + self._victim_choices(res.victims, before))
            if a == "finish":
                return Applied(rt.finish(f"r{sl[0]}"))
            if a == "evict":
                before = self._intervals()
                v = rt.evict_object_block(f"obj{sl[0]}")
                if v is None:
                    return Applied(False)
                head = dict(self._victim_choices([v], before))[f"head[{sl[0]}]"]
                return Applied(True, (("head", head),))
            if a == "evict_cached":
                return Applied(rt.evict_cached_block() is not None)
            if a == "tick":
                return self._tick()
            if a == "demote":
                return Applied(rt.demote_claim(f"c{sl[1]}", f"r{sl[0]}"))
            if a == "release":
                # an actor the step does not name is the owner (as SpecTarget does)
                actor = dict(step.choices).get("actor", self.cfg.claims[sl[0]].owner)
                return Applied(rt.release_claim(f"c{sl[0]}", f"tenant{actor}"),
                               (("actor", actor),))
            if a in ("defer", "refuse"):
                ok = (rt.defer if a == "defer" else rt.refuse)(f"r{sl[0]}")
                if not ok or self.policy.naming == Naming.EXACT:
                    return Applied(ok)
                named = rt.requests[f"r{sl[0]}"].named
                return Applied(True, tuple((f"name[{i}]", f"c{i}" in named) for i in range(K)))
            if a == "reuse":
                return Applied(rt.reuse(f"r{sl[0]}", f"obj{sl[1]}") > 0)
        except RuntimeUsageError as e:
            return Applied(False, note=str(e))
        raise ValueError(f"unknown action {a}")

    def _tick(self) -> Applied:
        """A tick, after the answers the runtime gives first to deferred requests that have
        waited response_ticks (O14): each answer is a spec step of its own, in order, read
        off the telemetry of the tick (victims as the admission's choices)."""
        before = self._intervals()
        mark = len(self.rt.telemetry.events)
        self.rt.tick()
        decided: List[Step] = []
        victims: List[Any] = []
        for e in self.rt.telemetry.events[mark:]:
            t, rid = e["type"], e.get("request_id")
            if t == "victim":
                victims.append(_Lost(e.get("object_id"), e.get("logical_position")))
            elif t == "claim_demoted" and rid:
                decided.append(Step("demote", (slot_of(rid), slot_of(e["claim_id"])), ()))
            elif t == "request_refused":
                decided.append(Step("refuse", (slot_of(rid),), ()))
            elif t == "request_admitted":
                choices = (("admit", bool(e.get("admit_future_reuse", True))),)
                decided.append(Step("admit", (slot_of(rid),),
                                    choices + self._victim_choices(victims, before)))
                victims = []
        if not decided:
            return Applied(True)
        return Applied(True, decided=tuple(decided) + (Step("tick", (), ()),))

    def _intervals(self) -> Dict[int, Tuple[int, ...]]:
        return {i: tuple(self.rt.objects[f"obj{i}"].positions()) for i in range(self.cfg.K)}

    def _victim_choices(self, victims, before) -> Tuple[Tuple[str, Any], ...]:
        """take_cached, take[i], head[i] as the spec names them, from the positions lost:
        head[i] when the lost positions are the lowest resident ones and not the highest."""
        K = self.cfg.K
        take = [0] * K
        lost: Dict[int, List[int]] = {i: [] for i in range(K)}
        cached = 0
        for v in victims:
            if v.object_id is None:
                cached += 1
            else:
                i = slot_of(v.object_id)
                take[i] += 1
                lost[i].append(v.position)
        out = [("take_cached", cached)] + [(f"take[{i}]", take[i]) for i in range(K)]
        for i in range(K):
            ps, gone = before[i], sorted(lost[i])
            tail = list(ps[len(ps) - len(gone):]) == gone if gone else True
            out.append((f"head[{i}]", bool(gone) and not tail and list(ps[:len(gone)]) == gone))
        return tuple(out)

    # --- abstraction ----------------------------------------------------------------------

    def view(self) -> Dict[str, Any]:
        """The abstraction function: block-level state -> refinement_view shape.  An object whose
        resident positions are not an interval shows them all (a divergence by itself)."""
        rt = self.rt
        out: Dict[str, Any] = {"clock": rt.clock, "empty": rt.pool.unhashed_free,
                               "cached": rt.ordinary_cached()}
        for i in range(self.cfg.K):
            obj = rt.objects[f"obj{i}"]
            iv = obj.interval()
            lo, hi = iv if iv is not None else (("non-interval", tuple(obj.positions())),) * 2
            c = rt.claims.get(f"c{i}")
            out[f"claims[{i}].lo"] = lo
            out[f"claims[{i}].hi"] = hi
            out[f"claims[{i}].status"] = int(c.status) if c else int(ClaimStatus.NONE)
        for j in range(self.cfg.R):
            r = rt.requests[f"r{j}"]
            out[f"requests[{j}].status"] = int(r.status)
            out[f"requests[{j}].live"] = len(r.blocks)
            out[f"requests[{j}].admit"] = r.admit_future_reuse
            out[f"requests[{j}].named"] = tuple(f"c{i}" in r.named for i in range(self.cfg.K))
        return out

    def events(self) -> List[Dict[str, Any]]:
        """The runtime's telemetry in the spec's vocabulary (as SpecTarget reports it): ids
        as slot numbers, blocking_claim_ids as one flag per claim slot, feasibility as the
        spec's enum value.  The raw JSON Lines events are `self.rt.telemetry.events`."""
        return [self._abstract_event(e) for e in self.rt.telemetry.events]

    def _abstract_event(self, e: Dict[str, Any]) -> Dict[str, Any]:
        out = dict(e)
        for f in ("claim_id", "object_id", "request_id"):
            if isinstance(out.get(f), str):
                out[f] = slot_of(out[f])
        if "blocking_claim_ids" in out:
            named = set(out["blocking_claim_ids"])
            out["blocking_claim_ids"] = tuple(f"c{i}" in named for i in range(self.cfg.K))
        if "feasibility" in out:
            out["feasibility"] = int(FEASIBILITY_BY_NAME[out["feasibility"]])
        return out

    def new_events(self) -> List[Dict[str, Any]]:
        """Events emitted since the previous call."""
        evs = self.rt.telemetry.events[self._seen:]
        self._seen = len(self.rt.telemetry.events)
        return evs
