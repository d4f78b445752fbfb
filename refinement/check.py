"""Refinement checking: run a target on a sequence of spec steps and, after every step, check
that what it did is a step of the spec.

Per step: the target applies the step and reports the choices it made; the spec is asked
whether the step is enabled with exactly those choices; the spec's successor under those
choices is computed and its refinement view compared with the target's view; the claim-level
events the target emitted are compared with the spec's; and every obligation (O1-O10) is
evaluated on the spec state reached, so a bad policy is seen to break where the spec says.

A step the target declines (taken=False) leaves both sides where they were: refinement is
trace inclusion, so declining is allowed; it is reported, with whether the spec would have
taken it with the trace's own choices.

A target that decides on its own while it applies a step (the patched engine's scheduler
defers, refuses, demotes, admits) reports those decisions as spec steps
(``Applied.decided``): each must be enabled in the spec with the target's choices and the
spec advances through them in order (then through the requested step, if the target took it
apart from its decisions); the view is compared after the group and the events of the whole
group. A decision that is no spec step here is a divergence."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from kvclaims.spec.actions import Step, complete_choices, enabled, successor
from kvclaims.spec.algebra import CONCRETE as C
from kvclaims.spec.obligations import OBLIGATIONS
from kvclaims.spec.policy import Policy
from kvclaims.spec.state import Config, State, initial_state
from kvclaims.spec.view import refinement_view, view_diff

from .target import Applied, spec_steps

# Events compared with the spec: everything claim- or request-level.  Victims are compared per
# object (the spec emits one per object and allocation, a runtime one per block); victims of
# ordinary cache are not compared (the spec does not name them inside an allocation).
_ID_FIELDS = ("claim_id", "request_id", "object_id")


def _slot(x) -> Optional[int]:
    if x is None or isinstance(x, int):
        return x
    return int(str(x).lstrip("cobjr"))


def event_keys(events: Sequence[Dict[str, Any]]) -> Counter:
    """Multiset of (type, claim, request, object[, blocks]) with ids as slot numbers."""
    keys: Counter = Counter()
    victims: Counter = Counter()
    for e in events:
        t = e["type"]
        if t == "victim":
            if e.get("object_id") is not None:
                victims[_slot(e["object_id"])] += int(e.get("blocks", 1))
            continue
        ids = tuple(_slot(e.get(f)) for f in _ID_FIELDS)
        if t in ("claim_rejected", "claim_submitted", "claim_accepted", "claim_materialized",
                 "claim_harmed", "claim_demoted", "claim_expired", "claim_released",
                 "release_denied"):
            ids = (ids[0], None, None)        # a claim event is keyed by its claim
        keys[(t,) + ids] += 1
    for obj, n in victims.items():
        keys[("victim", None, None, obj, n)] += 1
    return keys


@dataclass(frozen=True)
class StepReport:
    index: int                     # 1-based position in the step sequence
    label: str
    taken: bool
    spec_enabled: bool             # with the target's choices (taken) or the trace's (declined)
    choices: Tuple[Tuple[str, Any], ...] = ()
    view_diff: Tuple[Tuple[str, Any, Any], ...] = ()
    event_diff: Tuple[str, ...] = ()
    broken: Tuple[str, ...] = ()   # obligations false in the spec state after this step
    note: str = ""
    decided: int = 0               # decisions the target made on its own in this step

    @property
    def verdict(self) -> str:
        if self.decided and (not self.spec_enabled or self.view_diff or self.event_diff):
            return "divergence"
        if not self.taken:
            return "declined"
        if not self.spec_enabled or self.view_diff or self.event_diff:
            return "divergence"
        return "ok"

    def describe(self) -> str:
        if self.verdict != "divergence":
            return f"step {self.index} {self.label}: {self.verdict}"
        why = []
        if not self.spec_enabled:
            why.append(self.note if self.decided else
                       f"the spec does not allow it with the choices {dict(self.choices)}")
        why += [f"{k}: spec {a!r}, target {b!r}" for k, a, b in self.view_diff]
        why += list(self.event_diff)
        return f"step {self.index} {self.label}: divergence: " + "; ".join(why)


@dataclass
class RefinementReport:
    target: str
    policy: str
    steps: List[StepReport] = field(default_factory=list)
    initial_diff: Tuple[Tuple[str, Any, Any], ...] = ()

    @property
    def divergence(self) -> Optional[StepReport]:
        return next((s for s in self.steps if s.verdict == "divergence"), None)

    @property
    def ok(self) -> bool:
        return not self.initial_diff and self.divergence is None

    @property
    def declined(self) -> List[StepReport]:
        return [s for s in self.steps if s.verdict == "declined"]

    def first_broken(self) -> Optional[Tuple[int, Tuple[str, ...]]]:
        """(step index, obligations) where the first obligation broke, if any did."""
        prev: Tuple[str, ...] = ()
        for s in self.steps:
            new = tuple(o for o in s.broken if o not in prev)
            if new:
                return s.index, new
            prev = s.broken
        return None

    def broken_at_end(self) -> Tuple[str, ...]:
        return self.steps[-1].broken if self.steps else ()

    def to_json(self) -> Dict[str, Any]:
        fb = self.first_broken()
        return {"target": self.target, "policy": self.policy, "ok": self.ok,
                "steps": len(self.steps), "declined": [s.index for s in self.declined],
                "divergence": self.divergence.describe() if self.divergence else None,
                "initial_diff": [list(d) for d in self.initial_diff],
                "first_broken": {"step": fb[0], "obligations": list(fb[1])} if fb else None,
                "broken_at_end": list(self.broken_at_end())}


def broken_obligations(cfg: Config, pol: Policy, s: State) -> Tuple[str, ...]:
    return tuple(o for o, inv in OBLIGATIONS.items() if not inv.holds(C, cfg, pol, s))


class Refiner:
    """Step-by-step refinement check of one target from the initial state (used directly by
    the Hypothesis state machine, and by `check_refinement` for whole traces)."""

    def __init__(self, target, cfg: Config, pol: Policy):
        self.target, self.cfg, self.pol = target, cfg, pol
        target.reset(cfg, pol)
        self._enter(initial_state(cfg))
        self.index = 0
        self.initial_diff = tuple(view_diff(self.view, target.view()))
        self._new_events = getattr(target, "new_events", None)
        if self._new_events:
            self._new_events()

    def _enter(self, s: State) -> None:
        """Move the spec to s; its view and broken obligations are computed once per state
        (declined steps, most of a random trace, leave it where it is)."""
        self.state = s
        self.view = refinement_view(s)
        self.broken = broken_obligations(self.cfg, self.pol, s)

    def step(self, step: Step) -> StepReport:
        cfg, pol, s = self.cfg, self.pol, self.state
        self.index += 1
        app = self.target.apply(step)
        got = self._new_events() if self._new_events else None
        if app.decided:
            return self._group(step, app, got)
        if not app.taken:
            allowed = enabled(C, cfg, pol, s, step, complete_choices(cfg, pol, step))
            diff = tuple(view_diff(self.view, self.target.view()))
            # a declined step changes nothing; it may only report that it was turned away
            ev = tuple(f"declined but emitted {e['type']}" for e in (got or ())
                       if not e.get("duplicate"))
            return StepReport(self.index, step.label(), False, allowed, app.choices, diff, ev,
                              self.broken, app.note)
        merged = dict(step.choices)
        merged.update(dict(app.choices))
        ch = complete_choices(cfg, pol, Step(step.action, step.slots, tuple(merged.items())))
        chosen = tuple(sorted(ch.items()))
        if not enabled(C, cfg, pol, s, step, ch):
            return StepReport(self.index, step.label(), True, False, chosen, note=app.note)
        s2, log = successor(C, cfg, pol, s, step, ch, record=True)
        self._enter(s2)
        diff = tuple(view_diff(self.view, self.target.view()))
        ev_diff = _event_diff(log.events, got) if got is not None else ()
        return StepReport(self.index, step.label(), True, True, chosen, diff, ev_diff,
                          self.broken, app.note)

    def _group(self, step: Step, app: Applied, got) -> StepReport:
        """The target decided things on its own while applying ``step``: each decision must
        be a step the spec allows (with the target's choices) from the state the previous one
        left; the view is compared after the whole group, and the events of the group (the
        union of the spec's logs) with the target's new events."""
        cfg, pol, s = self.cfg, self.pol, self.state
        spec_events: List[Any] = []
        labels, chosen_all = [], []
        for d in spec_steps(step, app):
            ch = complete_decided(cfg, pol, s, d)
            chosen = tuple(sorted(ch.items()))
            labels.append(d.label().split(" {")[0])
            chosen_all.append((d.label().split(" {")[0], chosen))
            if not enabled(C, cfg, pol, s, d, ch):
                note = (f"the target decided {d.label()}, which is not a spec step here"
                        + (f" ({app.note})" if app.note else ""))
                return StepReport(self.index, _group_label(step, labels), app.taken, False,
                                  chosen, note=note, decided=len(app.decided))
            s, log = successor(C, cfg, pol, s, d, ch, record=True)
            spec_events += log.events
        self._enter(s)
        diff = tuple(view_diff(self.view, self.target.view()))
        ev_diff = _event_diff(spec_events, got) if got is not None else ()
        return StepReport(self.index, _group_label(step, labels), app.taken, True,
                          tuple(chosen_all), diff, ev_diff, self.broken,
                          app.note, decided=len(app.decided))


def _group_label(step: Step, decided: List[str]) -> str:
    return f"{step.label()} -> [{', '.join(decided)}]"


def complete_decided(cfg: Config, pol: Policy, s: State, step: Step) -> Dict[str, Any]:
    """The step's choices completed with neutral values; an admission whose ``take_cached``
    the target could not tell (reported as None: several allocations in one engine step)
    takes the remainder the spec's guard leaves (need - min(empty, need) - taken objects):
    the ordinary cache it took is still checked by the view after the group."""
    ch = complete_choices(cfg, pol, step)
    if step.action == "admit" and ch.get("take_cached") is None:
        need = cfg.requests[step.slots[0]].need
        took = sum(int(ch.get(f"take[{i}]", 0)) for i in range(cfg.K))
        ch["take_cached"] = need - min(s.empty, need) - took
    return ch


def _event_diff(spec_events, got) -> Tuple[str, ...]:
    want = event_keys([e.to_json() for e in spec_events])
    have = event_keys(got)
    return tuple(f"events: spec has {k} x{n}, target x{have.get(k, 0)}"
                 for k, n in sorted((want - have).items(), key=str)) + tuple(
        f"events: target has {k} x{n}, spec x{want.get(k, 0)}"
        for k, n in sorted((have - want).items(), key=str))


def check_refinement(target, cfg: Config, pol: Policy, steps: Sequence[Step],
                     stop_at_divergence: bool = True) -> RefinementReport:
    r = Refiner(target, cfg, pol)
    rep = RefinementReport(getattr(target, "name", type(target).__name__), pol.name,
                           initial_diff=r.initial_diff)
    for st in steps:
        sr = r.step(st)
        rep.steps.append(sr)
        if stop_at_divergence and sr.verdict == "divergence":
            break
    return rep
