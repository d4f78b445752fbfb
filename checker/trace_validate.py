"""Trace validation: does some behaviour of the spec, under a given policy, emit exactly the
events a runtime logged?  (What TLA+ trace validation asks of a log.)

Method: the explicit-state explorer's concrete reading of the spec's own actions
(spec/actions.py through `CONCRETE`), constrained by the events.  The trace is cut into
segments (checker/trace_segments.py), each the footprint of one action; from every state still
consistent with the prefix read so far (the frontier), the validator takes the actions the
segment names with the choices the events fix, tries every value of a choice they leave open,
keeps the successors whose guard holds and whose emitted events equal the segment's
(checker/trace_match.py), and drops the rest.  The frontier is a set of states, so choices the
trace leaves open do not multiply work once they lead to the same state.  An empty frontier is
the first event no behaviour of the policy produces.  The obligations of spec/obligations.py
are evaluated on every frontier state after each segment; one is violated at a segment when
every state consistent with the trace breaks it.

Why the explorer and not z3: a trace fixes the configuration and almost every choice, so the
search is a line, not a tree; the concrete interpreter replays a segment in microseconds,
where a solver query per segment costs milliseconds, and a 100,000-event trace must validate in
seconds.  z3 adds nothing a concrete frontier does not decide exactly."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional, Tuple

from kvclaims.spec.actions import ACTIONS, Step, enabled, recorded_protected, successor
from kvclaims.spec.algebra import CONCRETE as C
from kvclaims.spec.obligations import OBLIGATIONS
from kvclaims.spec.policy import Policy
from kvclaims.spec.state import initial_state

from .trace_infer import Inferred
from .trace_match import Observed, compare
from .trace_segments import Segment

# more states than this consistent with one prefix means the trace fixes too little to judge
FRONTIER_CAP = 64


@dataclass
class Node:
    """A state consistent with the trace so far, and the spec steps that reached it."""
    state: Any
    parent: Optional["Node"] = None
    step: Optional[Step] = None
    # obligations broken somewhere on the path to this state
    broken: frozenset = frozenset()

    def path(self) -> Tuple[List[Step], List[Any]]:
        steps, states, n = [], [], self
        while n is not None:
            states.append(n.state)
            if n.step is not None:
                steps.append(n.step)
            n = n.parent
        return steps[::-1], states[::-1]


@dataclass
class Replay:
    policy: str
    consistent: bool
    stuck: Optional[int] = None             # index of the first event no behaviour produces
    stuck_obligation: Optional[str] = None
    why: str = ""
    violated: Dict[str, Tuple[int, Any]] = field(default_factory=dict)   # ob -> (event, node)
    frontier: List[Node] = field(default_factory=list)
    last: Optional[Node] = None              # a node of the last frontier before it emptied
    segments_done: int = 0


def _choices_product(seg: Segment, fixed: Dict[str, Any], kind: str, cfg, pol):
    names = [c.name for c in ACTIONS[kind].choices(cfg, pol)]
    base = {n: fixed[n] for n in names if n in fixed}
    opens = [(n, seg.open_choices.get(n)) for n in names if n not in base]
    pools = []
    for n, vals in opens:
        if vals is None:
            # a choice the segment does not mention: its neutral value, except the names a
            # misattributing policy may pick freely, which the matcher then pins down
            vals = (False, True) if n.startswith("name[") else (
                (True,) if n == "admit" else (False,) if n.startswith("head[") else (0,))
        pools.append(vals)
    for combo in itertools.product(*pools):
        ch = dict(base)
        ch.update({n: v for (n, _), v in zip(opens, combo)})
        yield ch


def _spec_events(ev_log) -> List[Dict[str, Any]]:
    return [e.to_json() for e in (ev_log.events or [])]


def _try(cfg, pol, node: Node, step: Step, ch, observed: Observed, inf, why: List[str]):
    s = node.state
    if not enabled(C, cfg, pol, s, step, ch):
        why.append(f"{step.action} is not enabled")
        return None
    s2, log = successor(C, cfg, pol, s, step, ch, record=True)
    ok, reason = compare(_spec_events(log), observed, inf)
    if not ok:
        why.append(f"{step.action}: {reason}")
        return None
    return Node(s2, node, Step(step.action, step.slots, tuple(sorted(ch.items()))))


def _ticks(cfg, pol, node: Node, n: int, observed: Observed, inf, why) -> Optional[Node]:
    """n ticks; together they must emit exactly `observed` (expiries)."""
    s, events = node.state, []
    for _ in range(n):
        s2, log = successor(C, cfg, pol, s, Step("tick", ()), {}, record=True)
        events += _spec_events(log)
        node = Node(s2, node, Step("tick", ()))
        s = s2
    ok, reason = compare(events, observed, inf)
    if not ok:
        why.append(f"tick: {reason}")
        return None
    return node


def _observed(seg: Segment, idxs: Tuple[int, ...], events, inf) -> Observed:
    """The segment's (or one of its eviction chunks') events, reduced once for all policies."""
    if idxs not in seg.reduced:
        seg.reduced[idxs] = Observed([events[n] for n in idxs], inf)
    return seg.reduced[idxs]


def _evict_steps(cfg, pol, node: Node, seg: Segment, events, inf, why) -> List[Node]:
    """Housekeeping eviction: one spec step per victim block, with the announcements it caused."""
    frontier = [node]
    chunks: List[List[int]] = []
    for n in seg.events:
        if events[n]["type"] == "victim" or not chunks:
            chunks.append([n])
        else:
            chunks[-1].append(n)
    for chunk in chunks:
        v = events[chunk[0]]
        observed = _observed(seg, tuple(chunk), events, inf)
        nxt = []
        for nd in frontier:
            o = v.get("object_id")
            if o is None:
                r = _try(cfg, pol, nd, Step("evict_cached", ()), {}, observed, inf, why)
                nxt += [r] if r else []
                continue
            i = inf.objects[o]
            heads = (v["from_head"],) if isinstance(v.get("from_head"), bool) else (False, True)
            for h in heads:
                r = _try(cfg, pol, nd, Step("evict", (i,)), {"head": h}, observed, inf, why)
                nxt += [r] if r else []
        frontier = _dedupe(nxt)
        if not frontier:
            break
    return frontier


def _dedupe(nodes: List[Node]) -> List[Node]:
    if len(nodes) <= 1:
        return nodes
    seen, out = set(), []
    for n in nodes:
        if n.state not in seen:
            seen.add(n.state)
            out.append(n)
    return out[:FRONTIER_CAP]


def _advance(cfg, pol, node: Node, seg: Segment, events, inf: Inferred, why) -> List[Node]:
    observed = _observed(seg, tuple(seg.events), events, inf)
    clock = inf.clocks[seg.first]
    if seg.kind == "tick":
        if inf.has_clock:
            r = _ticks(cfg, pol, node, max(clock - node.state.clock, 1), observed, inf, why)
            return [r] if r else []
        # ticks are not logged: as many as it takes for the expiry to fall due
        for n in range(1, inf.longest_duration + 1):
            r = _ticks(cfg, pol, node, n, observed, inf, [])
            if r:
                return [r]
        why.append("tick: no number of ticks expires what the trace expires")
        return []
    if clock > node.state.clock:
        node = _ticks(cfg, pol, node, clock - node.state.clock, Observed([], inf), inf, why)
        if node is None:
            return []
    if seg.kind == "evict*":
        return _evict_steps(cfg, pol, node, seg, events, inf, why)
    out = []
    slot_sets = [seg.slots]
    if seg.kind == "demote":
        slot_sets = [(j, seg.slots[1]) for j in range(cfg.R)]
    for slots in slot_sets:
        for ch in _choices_product(seg, seg.choices, seg.kind, cfg, pol):
            r = _try(cfg, pol, node, Step(seg.kind, slots), ch, observed, inf, why)
            if r:
                out.append(r)
    return out


def _stuck_obligation(cfg, seg: Segment, events, inf, frontier: List[Node],
                      why: List[str]) -> str:
    """Which obligation the first unexplained event breaks: a protected block lost outside a
    named action is O3; a wrong list of blocking claims O8; a lifecycle step out of order O9;
    a release by someone else O10; anything else the spec cannot reconstruct, O6."""
    if seg.kind.startswith("stuck:"):
        return seg.kind.split(":", 1)[1]
    if seg.kind in ("admit", "evict*"):
        hit = {inf.objects[events[n]["object_id"]] for n in seg.events
               if events[n]["type"] == "victim" and events[n].get("object_id") is not None}
        if any(recorded_protected(C, cfg, nd.state, i) for nd in frontier for i in hit):
            if any(events[n]["type"] in ("claim_demoted", "claim_expired")
                   for n in seg.events):
                return "O4"
            return "O3"
        if any("claim_harmed" in w for w in why):
            return "O5"
        if any("request_admitted" in w or "admit" in w for w in why) and seg.kind == "admit":
            return "O2" if any("conflict" in w for w in why) else "O6"
        return "O6"
    if seg.kind in ("defer", "refuse"):
        # seg.why: the deferral or refusal came with no conflict event at all
        return "O8" if seg.why or any("named=" in w for w in why) else "O6"
    if seg.kind == "release":
        return "O10"
    return "O9"


REQUEST_ACTIONS = ("admit", "finish", "defer", "refuse", "reuse", "demote")


def _judge(cfg, pol, node: Node, before: List[Node], pending: List[str]) -> None:
    """The obligations `node` breaks, read on the claims and on the requests the segment's
    steps touched only: every obligation is a conjunction over slots, and a request no step
    touched was judged when one last did.  This keeps a step's cost independent of how many
    requests the trace has seen."""
    ids = {id(b) for b in before}
    touched, anc = set(), node
    while anc is not None and id(anc) not in ids:
        if anc.step is not None and anc.step.action in REQUEST_ACTIONS:
            touched.add(anc.step.slots[0])
        anc = anc.parent
    keep = sorted(touched)
    s = node.state
    c1 = replace(cfg, requests=tuple(cfg.requests[j] for j in keep))
    s1 = replace(s, requests=tuple(s.requests[j] for j in keep))
    new = {ob for ob in pending if not OBLIGATIONS[ob].holds(C, c1, pol, s1)}
    node.broken = (anc.broken if anc is not None else frozenset()) | new


def replay(cfg, pol: Policy, segments: List[Segment], events, inf: Inferred) -> Replay:
    rep = Replay(pol.name, True)
    frontier = [Node(initial_state(cfg))]
    pending = [o for o in OBLIGATIONS]
    for seg in segments:
        why: List[str] = []
        nxt: List[Node] = []
        if seg.kind == "noop":
            nxt = frontier
        elif not seg.kind.startswith("stuck:"):
            for node in frontier:
                nxt += _advance(cfg, pol, node, seg, events, inf, why)
        nxt = _dedupe(nxt)
        if not nxt:
            rep.consistent = False
            rep.stuck = seg.first
            rep.stuck_obligation = _stuck_obligation(cfg, seg, events, inf, frontier, why)
            rep.why = seg.why or (why[0] if why else "no action of the spec emits it")
            rep.last = frontier[0]
            rep.frontier = frontier
            return rep
        if nxt is not frontier:
            for nd in nxt:
                _judge(cfg, pol, nd, frontier, pending)
        frontier = nxt
        rep.segments_done += 1
        for ob in list(pending):
            if all(ob in nd.broken for nd in frontier):
                rep.violated[ob] = (seg.first, frontier[0])
                pending.remove(ob)
    rep.frontier = frontier
    rep.last = frontier[0]
    return rep


def culprit(ob: str, cfg, pol, state) -> Tuple[Optional[int], Optional[int]]:
    """(claim slot, request slot) that breaks obligation `ob` in `state`: the obligation read
    over one slot at a time."""
    inv = OBLIGATIONS[ob]
    for i in range(cfg.K):
        c1 = replace(cfg, claims=(cfg.claims[i],), requests=())
        s1 = replace(state, claims=(state.claims[i],), requests=())
        if not inv.holds(C, c1, pol, s1):
            return i, None
    for j in range(cfg.R):
        c1 = replace(cfg, requests=(cfg.requests[j],))
        s1 = replace(state, requests=(state.requests[j],))
        if not inv.holds(C, c1, pol, s1):
            return None, j
    return None, None


