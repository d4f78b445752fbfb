"""Do the events a spec step emitted equal the events a runtime logged for it?

Both sides are reduced to the contract's observables with the runtime's ids replaced by spec
slots: claim / request / object identity, the number of blocks lost per object (a runtime logs
one victim event per block, the spec one per object and step), and for conflicts the action,
the claims named, the feasibility verdict and the live blocks reported.  A field the runtime
did not log matches anything: absence is judged later as "not evidenced", never as agreement
with a value it did not state."""
from __future__ import annotations

from collections import Counter
from typing import Any, Dict, List, Optional, Tuple

from kvclaims.spec.vocab import Feasibility

from .trace_infer import Inferred

UNKNOWN_CLAIM = -1


def _feas(v) -> Optional[str]:
    if v is None:
        return None
    if isinstance(v, int) and not isinstance(v, bool):
        return Feasibility(v).name.lower()
    return str(v).lower()


def named_slots(v, inf: Optional[Inferred]) -> Optional[frozenset]:
    """blocking_claim_ids as a set of claim slots: spec and MicroRuntime log one bool per slot,
    other runtimes log ids; an id that is no claim of the trace maps to UNKNOWN_CLAIM."""
    if v is None:
        return None
    if all(isinstance(x, bool) for x in v):
        return frozenset(i for i, b in enumerate(v) if b)
    if inf is None:
        return frozenset(v)
    return frozenset(inf.claims.get(x, UNKNOWN_CLAIM) for x in v)


def _key(e: Dict[str, Any], inf: Optional[Inferred]) -> Dict[str, Any]:
    """The observables of one non-victim event; inf is None for the spec's own events, whose
    ids already are slots."""
    def cl(x):
        return x if inf is None else inf.claims.get(x, UNKNOWN_CLAIM)

    def rq(x):
        return x if inf is None or x is None else inf.requests.get(x)

    t = e["type"]
    k: Dict[str, Any] = {"type": t}
    if t.startswith("claim_") or t == "release_denied":
        k["claim"] = cl(e.get("claim_id"))
        if t == "claim_demoted":
            k["request"] = rq(e.get("request_id"))
    elif t == "object_stored":
        k["object"] = e["object_id"] if inf is None else inf.objects.get(e["object_id"])
        k["blocks"] = e.get("blocks")
    elif t == "prefix_hit":
        k["request"] = rq(e.get("request_id"))
        k["object"] = e["object_id"] if inf is None else inf.objects.get(e["object_id"])
    else:
        k["request"] = rq(e.get("request_id"))
        if t == "conflict":
            k["action"] = e.get("arbiter_action")
            k["named"] = named_slots(e.get("blocking_claim_ids"), inf)
            k["feasibility"] = _feas(e.get("feasibility"))
            k["live"] = e.get("active_live_blocks_required")
        if t == "request_admitted":
            k["admit"] = e.get("admit_future_reuse")
    return k


def _agrees(spec: Dict[str, Any], obs: Dict[str, Any]) -> bool:
    return all(obs.get(f) is None or spec.get(f) is None or obs[f] == spec[f] for f in spec)


def _losses(events, inf) -> Counter:
    c: Counter = Counter()
    for e in events:
        o = e.get("object_id")
        if inf is not None and o is not None:
            o = inf.objects.get(o)
        c[o] += int(e.get("blocks") or 1)
    return c


class Observed:
    """The runtime's side of a segment, reduced once (every policy and every frontier state
    compares against the same events)."""
    __slots__ = ("losses", "rest")

    def __init__(self, observed: List[Dict[str, Any]], inf: Inferred):
        self.losses = _losses([e for e in observed if e["type"] == "victim"], inf)
        # ordinary cache has no identity in the spec: its admit takes cached blocks silently
        # (the count is its choice, fixed from the trace and checked by the guard), so only
        # losses of objects are compared
        self.losses.pop(None, None)
        self.rest = [_key(e, inf) for e in observed if e["type"] != "victim"]


def compare(spec_events: List[Dict[str, Any]], obs: Observed,
            inf: Inferred) -> Tuple[bool, str]:
    """(agree, why not)."""
    ls = _losses([e for e in spec_events if e["type"] == "victim"], None)
    ls.pop(None, None)
    if ls != obs.losses:
        def show(c):
            return {inf.claim_name(o): n for o, n in c.items()}
        return False, f"the spec loses {show(ls) or 'nothing'}, the trace " \
                      f"{show(obs.losses) or 'nothing'}"
    rest = list(obs.rest)
    for e in spec_events:
        if e["type"] == "victim":
            continue
        k = _key(e, None)
        for n, o in enumerate(rest):
            if o["type"] == k["type"] and _agrees(k, o):
                del rest[n]
                break
        else:
            close = [o for o in rest if o["type"] == k["type"]]
            if close:
                diff = {f: (k.get(f), close[0].get(f)) for f in k
                        if close[0].get(f) is not None and k.get(f) is not None
                        and close[0][f] != k[f]}
                spec = ", ".join(f"{f}={a}" for f, (a, b) in diff.items())
                trace = ", ".join(f"{f}={b}" for f, (a, b) in diff.items())
                return False, f"{k['type']}: spec {{{spec}}}, trace {{{trace}}}"
            return False, f"the spec emits {k['type']}, the trace does not"
    if rest:
        return False, f"the trace has {rest[0]['type']} that the spec step does not emit"
    return True, ""
