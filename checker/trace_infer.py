"""What a trace fixes, inferred from its events alone: the spec configuration (usable pool,
protected cap, one slot per reusable object with the claim on it, footprints, predicates,
modes, owners, cache identities, durations, request sizes) and the map from the runtime's ids
to the spec's slot numbers.  Whatever the trace does not say is recorded in `unfixed`, so the
validator can answer "not evidenced" instead of assuming a value that would make an obligation
hold."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from kvclaims.errors import UsageError
from kvclaims.spec.state import ClaimConfig, Config, RequestConfig
from kvclaims.spec.vocab import Mode

CLAIM_TYPES = ("claim_submitted", "claim_accepted", "claim_rejected", "claim_materialized",
               "claim_harmed", "claim_demoted", "claim_expired", "claim_released",
               "release_denied")
REQUEST_TYPES = ("conflict", "request_admitted", "request_deferred", "request_refused",
                 "request_finished", "prefix_hit")
# an expiring claim the trace never expires: its duration is beyond the trace
NEVER = 10 ** 9


@dataclass
class Inferred:
    cfg: Config
    objects: Dict[Any, int]            # object id -> slot
    claims: Dict[Any, int]             # claim id -> slot (the slot of its object)
    requests: Dict[Any, int]           # request id -> slot
    owners: Dict[Any, int]
    clocks: List[int]                  # logical clock of each event (the trace's or counted)
    has_clock: bool = True             # False: ticks are not logged, only expiries
    unfixed: Dict[str, List[str]] = field(default_factory=dict)

    @property
    def longest_duration(self) -> int:
        return max([c.duration for c in self.cfg.claims if c.duration < NEVER] or [1])

    def claim_name(self, i: int) -> Optional[str]:
        for k, v in self.claims.items():
            if v == i:
                return str(k)
        for k, v in self.objects.items():
            if v == i:
                return f"(object {k})"
        return None

    def request_name(self, j: int) -> Optional[str]:
        for k, v in self.requests.items():
            if v == j:
                return str(k)
        return None

    def to_json(self) -> Dict[str, Any]:
        from .configio import config_to_dict
        return {"config": config_to_dict(self.cfg),
                "claims": {str(k): v for k, v in self.claims.items()},
                "objects": {str(k): v for k, v in self.objects.items()},
                "requests": {str(k): v for k, v in self.requests.items()},
                "unfixed": self.unfixed}


def _mode(name) -> Optional[int]:
    if isinstance(name, int) and not isinstance(name, bool):
        return name
    try:
        return int(Mode[str(name).upper()])
    except KeyError:
        return None


def _pred(p) -> Optional[tuple]:
    if not isinstance(p, dict) or not isinstance(p.get("k"), int):
        return None
    return (int(p.get("start", 0)), p["k"])


def infer(events: List[Dict[str, Any]]) -> Inferred:
    objects: Dict[Any, int] = {}
    claims: Dict[Any, int] = {}
    requests: Dict[Any, int] = {}
    info: Dict[int, Dict[str, Any]] = {}
    need: Dict[int, int] = {}
    rid_identity: Dict[int, Any] = {}
    hits: Dict[int, int] = {}          # request -> object it hit (its identity when unsaid)
    owners: Dict[Any, int] = {}
    identities: Dict[str, int] = {}
    unfixed: Dict[str, List[str]] = {}
    usable = cap = response_ticks = None
    deferred = False

    def obj_slot(o):
        if o not in objects:
            objects[o] = len(objects)
            info[objects[o]] = {}
        return objects[o]

    def identity(v):
        key = json.dumps(v, sort_keys=True)
        return identities.setdefault(key, len(identities))

    # the clock: the trace's own when it has one, else one tick per expiry event
    clocks, clock, has_clock = [], 0, any("clock" in e for e in events)
    for e in events:
        t = e["type"]
        if has_clock:
            clock = e.get("clock", clock)
        elif t == "claim_expired" and not e.get("late"):
            clock += 1
        clocks.append(clock)
        if isinstance(e.get("usable_blocks"), int):
            if usable is None:
                usable = e["usable_blocks"]
            elif e["usable_blocks"] != usable:
                raise UsageError(f"event {e.get('line')}: usable_blocks changes within the "
                                 f"trace ({usable} -> {e['usable_blocks']})")
        if t == "object_stored" or (t == "victim" and e.get("object_id") is not None):
            d = info[obj_slot(e["object_id"])]
            if t == "object_stored":
                d["stored"] = max(d.get("stored", 0), int(e.get("blocks") or 0))
        if t in CLAIM_TYPES and e.get("claim_id") is not None:
            cid = e["claim_id"]
            if cid not in claims:
                o = e.get("object_id")
                i = obj_slot(o if o is not None else ("claim", cid))
                if any(v == i for v in claims.values()):
                    raise UsageError(f"event {e.get('line')}: a second claim on object {o}; "
                                     f"the spec holds one claim per object")
                claims[cid] = i
            d = info[claims[cid]]
            for k in ("protection_mode", "predicate", "footprint_blocks", "duration",
                      "cache_identity", "owner_scope"):
                if e.get(k) is not None:
                    d.setdefault(k, e[k])
            if t == "claim_accepted":
                d["accepted_at"] = clock
                if isinstance(e.get("cap_blocks"), int):
                    cap = e["cap_blocks"]
            if t == "claim_expired" and not e.get("late"):
                d["expired_at"] = clock
        if t == "conflict" and e.get("arbiter_action") == "defer":
            deferred = True
            if isinstance(e.get("response_ticks"), int):
                response_ticks = e["response_ticks"]
        if t in REQUEST_TYPES and e.get("request_id") is not None:
            j = requests.setdefault(e["request_id"], len(requests))
            n = e.get("live_blocks") if t == "request_admitted" else (
                e.get("active_live_blocks_required")
                if t in ("conflict", "request_deferred") else None)
            # no-admit's conflict event under-reports live KV (O2): the admission's count wins
            if isinstance(n, int) and n > 0 and (t == "request_admitted" or j not in need):
                need[j] = n
            if e.get("cache_identity") is not None:
                rid_identity[j] = e["cache_identity"]
            if t == "prefix_hit" and e.get("object_id") is not None:
                hits.setdefault(j, obj_slot(e["object_id"]))
    if usable is None:
        raise UsageError("no event carries usable_blocks")

    ccs = []
    for i in range(len(objects)):
        d = info[i]
        name = next((str(k) for k, v in claims.items() if v == i), None)
        claimed = name is not None
        fp = d.get("stored") or d.get("footprint_blocks")
        pred = _pred(d.get("predicate"))
        if claimed and pred is None:
            unfixed.setdefault("predicate", []).append(name)
        if fp is None:
            fp = sum(pred) if pred else 1
        if pred is None:
            pred = (0, fp)
        mode = _mode(d.get("protection_mode"))
        if claimed and mode is None:
            unfixed.setdefault("protection_mode", []).append(name)
        if mode is None:
            mode = int(Mode.HARD_PROTECTED)
        duration = d.get("duration") or 0
        if "expired_at" in d:
            mode = int(Mode.EXPIRING)       # only an expiring claim expires by the clock
            if not duration:
                duration = d["expired_at"] - d.get("accepted_at", 0)
        if mode == int(Mode.EXPIRING) and not duration:
            duration = NEVER
        if claimed and d.get("cache_identity") is None:
            unfixed.setdefault("cache_identity", []).append(name)
        owner = d.get("owner_scope")
        ccs.append(ClaimConfig(
            footprint=max(fp, sum(pred)), pred_start=pred[0], pred_len=pred[1], mode=mode,
            owner=owners.setdefault(owner, len(owners)),
            identity=identity(d.get("cache_identity")), duration=duration))
    reqs = []
    for rid, j in sorted(requests.items(), key=lambda kv: kv[1]):
        if j not in need:
            unfixed.setdefault("live_blocks", []).append(str(rid))
        if j in rid_identity:
            ident = identity(rid_identity[j])
        elif j in hits:
            ident = ccs[hits[j]].identity
            unfixed.setdefault("request_identity", []).append(str(rid))
        else:
            ident = identity(None)
        reqs.append(RequestConfig(need=need.get(j, 1), identity=ident))
    if deferred and response_ticks is None:
        # the runtime deferred but stated no response bound: the spec may not assume one
        unfixed.setdefault("response_ticks", []).append("the runtime")
        response_ticks = NEVER
    cfg = Config(usable=usable, cap=cap if cap is not None else usable, claims=tuple(ccs),
                 requests=tuple(reqs),
                 **({"response_ticks": response_ticks} if response_ticks is not None else {}))
    return Inferred(cfg, objects, claims, requests, owners, clocks, has_clock, unfixed)
