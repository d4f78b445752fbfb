"""Cutting a normal-form trace into the observable footprints of single spec steps.

One spec action emits a fixed pattern of events (spec/actions.py): accept emits accepted and,
if the object is already resident, materialized; an admission emits its victims, the harm or
late announcements they cause, then request_admitted; a refusal emits a conflict and
request_refused.  A segment is the run of events one action would have emitted; the validator
then asks which actions of the spec, in which states and with which choices, emit exactly
those events.  Segments whose events no action emits together (a conflict with no outcome, a
claim event without a claim id) are kept with `kind` naming why, so the stuck event is reported
against the obligation it breaks."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from .trace_infer import CLAIM_TYPES, REQUEST_TYPES, Inferred

# events that belong to the allocation (or eviction) whose victims caused them
GROUP_TAIL = ("claim_harmed", "claim_demoted", "claim_expired")


@dataclass
class Segment:
    kind: str                      # spec action, or "stuck:<obligation>" when none emits it
    first: int                     # index of its first event
    events: List[int] = field(default_factory=list)
    slots: Tuple[int, ...] = ()
    choices: Dict[str, Any] = field(default_factory=dict)
    # choices the events leave open: every value is tried
    open_choices: Dict[str, Tuple[Any, ...]] = field(default_factory=dict)
    why: str = ""
    # the runtime's events of this segment reduced for comparison, computed once (trace_match)
    reduced: Dict[Tuple[int, ...], Any] = field(default_factory=dict, repr=False)


def _victims(events, idxs, inf: Inferred) -> Tuple[int, List[int], List[Optional[bool]]]:
    """take_cached, take[i] and head[i] of a run of victim events: which end of object i the
    lost logical positions came from (None when the trace gives no positions)."""
    K = inf.cfg.K
    cached, take = None, [0] * K
    pos: List[List[int]] = [[] for _ in range(K)]
    said: List[Optional[bool]] = [None] * K      # from_head, when the event says it
    for n in idxs:
        e = events[n]
        if e["type"] != "victim":
            continue
        o = e.get("object_id")
        b = int(e.get("blocks") or 1)
        if o is None:
            cached = (cached or 0) + b
            continue
        i = inf.objects[o]
        take[i] += b
        if isinstance(e.get("logical_position"), int):
            pos[i].append(e["logical_position"])
        if isinstance(e.get("from_head"), bool):
            said[i] = e["from_head"]
    head: List[Optional[bool]] = []
    for i in range(K):
        if said[i] is not None:
            head.append(said[i])
        elif not pos[i] or len(pos[i]) != take[i]:
            head.append(None)
        else:
            # tail-first loses the highest positions; a head loss starts at the lowest
            head.append(min(pos[i]) == 0 and max(pos[i]) < inf.cfg.claims[i].footprint - 1)
    return cached, take, head


def _group(events, n, inf: Inferred) -> Tuple[Segment, int]:
    """Victims and what they caused, up to and including the admission they made room for."""
    start = n
    idxs = []
    seen_victim = False
    lead_conflict = events[n]["type"] == "conflict"
    if lead_conflict:
        idxs.append(n)
        n += 1
    while n < len(events):
        t = events[n]["type"]
        if t == "victim":
            seen_victim = True
        elif t in GROUP_TAIL and (seen_victim or t == "claim_harmed"):
            pass
        elif t == "conflict" and events[n].get("arbiter_action") == "serve_no_admit":
            pass        # a runtime may log its no-admit decision after the victims
        else:
            break
        idxs.append(n)
        n += 1
    # victims the runtime says were housekeeping evictions (reason "evict") made room for no
    # admission, even when one follows at once
    housekeeping = seen_victim and all(
        events[k].get("reason") == "evict" for k in idxs if events[k]["type"] == "victim")
    if n < len(events) and events[n]["type"] == "request_admitted" and \
            events[n].get("request_id") in inf.requests and not housekeeping:
        idxs.append(n)
        j = inf.requests[events[n]["request_id"]]
        cached, take, head = _victims(events, idxs, inf)
        seg = Segment("admit", start, idxs, (j,))
        seg.choices = {f"take[{i}]": t for i, t in enumerate(take)}
        if cached is None:
            # no victim event for unclaimed cache: a runtime need not report evicting blocks
            # no claim or object holds (the spec's own telemetry does not), so the count is
            # whatever the admission needed beyond the pool's empty blocks
            seg.open_choices["take_cached"] = tuple(
                range(max(0, inf.cfg.requests[j].need - sum(take)) + 1))
        else:
            seg.choices["take_cached"] = cached
        for i, h in enumerate(head):
            if h is None:
                seg.open_choices[f"head[{i}]"] = (False, True) if take[i] else (False,)
            else:
                seg.choices[f"head[{i}]"] = h
        adm = events[n].get("admit_future_reuse")
        if isinstance(adm, bool):
            seg.choices["admit"] = adm
        else:
            seg.open_choices["admit"] = (True, False)
        return seg, n + 1
    if lead_conflict:
        return Segment("stuck:O6", start, [start], why="a conflict event with no outcome "
                       "(no deferral, refusal or admission follows)"), start + 1
    if not seen_victim:
        e = events[start]
        return Segment("stuck:O1", start, [start],
                       why=f"{e['type']} with no loss that caused it"), start + 1
    # no admission: housekeeping eviction, one block per spec step; the run stays one segment
    # whose steps the validator takes one by one (kind 'evict*')
    return Segment("evict*", idxs[0], idxs), n


def cut(events: List[Dict[str, Any]], inf: Inferred) -> List[Segment]:
    out: List[Segment] = []
    n = 0
    while n < len(events):
        e = events[n]
        t = e["type"]
        if t in CLAIM_TYPES and e.get("claim_id") is None:
            out.append(Segment("stuck:O6", n, [n], why=f"{t} names no claim_id: the claim "
                               f"cannot be identified from the trace"))
            n += 1
            continue
        if t in REQUEST_TYPES and e.get("request_id") is None:
            out.append(Segment("stuck:O6", n, [n], why=f"{t} names no request_id"))
            n += 1
            continue
        nxt = events[n + 1] if n + 1 < len(events) else {}
        if e.get("duplicate"):
            # a call refused for reusing a taken claim id: it changes no claim (the observer
            # files it the same way), so no spec step corresponds to it
            out.append(Segment("noop", n, [n]))
        elif t == "claim_submitted":
            out.append(Segment("submit", n, [n], (inf.claims[e["claim_id"]],)))
        elif t == "claim_rejected":
            out.append(Segment("reject", n, [n], (inf.claims[e["claim_id"]],)))
        elif t == "claim_accepted":
            idxs = [n]
            if nxt.get("type") == "claim_materialized" and nxt.get("claim_id") == e["claim_id"]:
                idxs.append(n + 1)
            out.append(Segment("accept", n, idxs, (inf.claims[e["claim_id"]],)))
            n += len(idxs)
            continue
        elif t == "object_stored":
            i = inf.objects[e["object_id"]]
            idxs = [n]
            while n + len(idxs) < len(events) and \
                    events[n + len(idxs)]["type"] == "claim_materialized" and \
                    inf.claims.get(events[n + len(idxs)].get("claim_id")) == i:
                idxs.append(n + len(idxs))
            out.append(Segment("materialize", n, idxs, (i,)))
            n += len(idxs)
            continue
        elif t == "claim_materialized":
            out.append(Segment("stuck:O5", n, [n], why="claim reported materialized with no "
                               "storage or acceptance that would make its predicate true"))
        elif t == "conflict" and nxt.get("type") in ("request_deferred", "request_refused") \
                and nxt.get("request_id") == e.get("request_id"):
            kind = "defer" if nxt["type"] == "request_deferred" else "refuse"
            out.append(Segment(kind, n, [n, n + 1], (inf.requests[e["request_id"]],)))
            n += 2
            continue
        elif t in ("request_deferred", "request_refused") and e.get("request_id") in inf.requests:
            # a runtime that does not arbitrate (native) lets a request wait with no conflict
            # event; one that arbitrates owes that event (O8): the policy's replay decides
            kind = "defer" if t == "request_deferred" else "refuse"
            out.append(Segment(kind, n, [n], (inf.requests[e["request_id"]],),
                               why=f"{t} without the conflict event that names its blocking "
                                   f"claims"))
        elif t in ("conflict", "victim", "claim_harmed") or (t in GROUP_TAIL and e.get("late")):
            seg, n = _group(events, n, inf)
            out.append(seg)
            continue
        elif t == "request_admitted":
            seg, n = _group(events, n, inf)
            out.append(seg)
            continue
        elif t == "request_finished":
            out.append(Segment("finish", n, [n], (inf.requests[e["request_id"]],)))
        elif t == "claim_demoted":
            # which request it makes room for is a choice the spec's demote carries
            out.append(Segment("demote", n, [n], (None, inf.claims[e["claim_id"]])))
        elif t == "claim_expired":
            out.append(Segment("tick", n, [n]))
        elif t in ("claim_released", "release_denied"):
            i = inf.claims[e["claim_id"]]
            idxs = [n]
            actor = e.get("actor", e.get("owner_scope"))
            seg = Segment("release", n, idxs, (i,))
            if actor is not None and actor in inf.owners:
                seg.choices["actor"] = inf.owners[actor]
            elif isinstance(actor, int):
                seg.choices["actor"] = actor
            else:
                seg.open_choices["actor"] = tuple(range(max(len(inf.owners), 1) + 1))
            out.append(seg)
        elif t == "prefix_hit":
            out.append(Segment("reuse", n, [n], (inf.requests[e["request_id"]],
                                                 inf.objects[e["object_id"]])))
        else:
            out.append(Segment("stuck:O6", n, [n], why=f"event type {t} is not in the spec's "
                               f"vocabulary"))
        n += 1
    return out
