"""The spec itself as a refinement target.

It resolves the nondeterminism the spec leaves open deterministically, the way vLLM does: an
allocation takes free (empty) blocks first, then ordinary cached blocks, then blocks of claimable
objects in slot order, tail first; only a runtime that protects block counts rather than
positions (a policy with `may_take_head`) takes them from the head, as our MicroRuntime does.
Among those preferences it takes the first choice the spec's guard (and so the policy) allows.
Choices a step gives explicitly (admit, actor, name[i], head...) are kept."""
from __future__ import annotations

import itertools
from typing import Any, Dict, List

from kvclaims.spec.actions import (ACTIONS, Step, blocking_claims, complete_choices, enabled,
                                   successor)
from kvclaims.spec.algebra import CONCRETE as C
from kvclaims.spec.policy import Naming, Policy
from kvclaims.spec.state import Config, initial_state, resident
from kvclaims.spec.view import refinement_view
from kvclaims.spec.vocab import RequestStatus as RS

from .target import Applied


def _compositions(total: int, bounds: List[int]):
    """Splits of `total` over slots with upper bounds, earliest slots filled first."""
    if not bounds:
        if total == 0:
            yield ()
        return
    for x in range(min(bounds[0], total), -1, -1):
        for tail in _compositions(total - x, bounds[1:]):
            yield (x,) + tail


class SpecTarget:
    name = "spec"

    def reset(self, cfg: Config, policy: Policy) -> None:
        self.cfg, self.pol = cfg, policy
        self.s = initial_state(cfg)
        self._events: List[Dict[str, Any]] = []

    def _candidates(self, step: Step):
        cfg, pol, s = self.cfg, self.pol, self.s
        given = dict(step.choices)
        base = complete_choices(cfg, pol, Step(step.action, step.slots, ()))
        names = [c.name for c in ACTIONS[step.action].choices(cfg, pol)]
        head_pref = (True, False) if pol.may_take_head else (False, True)
        if step.action == "admit":
            need = cfg.requests[step.slots[0]].need
            rest = need - min(s.empty, need)
            adm = given.get("admit", True)
            for admit in (adm, not adm):
                for tc in range(min(s.cached, rest), -1, -1):
                    bounds = [resident(c) for c in s.claims]
                    for take in _compositions(rest - tc, bounds):
                        for hd in itertools.product(*[head_pref if t else (False,)
                                                      for t in take]):
                            ch = dict(base, admit=admit, take_cached=tc)
                            ch.update({f"take[{i}]": take[i] for i in range(cfg.K)})
                            ch.update({f"head[{i}]": hd[i] for i in range(cfg.K)})
                            yield ch
            return
        if step.action == "evict" and "head" not in given:
            for h in head_pref:
                yield dict(base, head=h)
            return
        if step.action in ("defer", "refuse") and pol.naming != Naming.EXACT:
            truth = blocking_claims(C, cfg, s)
            ch = dict(base, **{f"name[{i}]": bool(truth[i]) for i in range(cfg.K)})
            ch.update({k: v for k, v in given.items() if k in names})
            yield ch
            return
        if step.action == "release" and "actor" not in given:
            yield dict(base, actor=cfg.claims[step.slots[0]].owner)
            return
        yield complete_choices(cfg, pol, step)

    def apply(self, step: Step) -> Applied:
        taken = self._take(step)
        if taken is not None:
            return Applied(True, taken)
        if step.action == "tick" and self.pol.bounded_response:
            return self._answer_then_tick(step)
        return Applied(False, note=f"{step.action}{step.slots} not enabled")

    def _take(self, step: Step):
        """Take the step with the first allowed choice; its choices, or None."""
        for ch in self._candidates(step):
            if enabled(C, self.cfg, self.pol, self.s, step, ch):
                self.s, ev = successor(C, self.cfg, self.pol, self.s, step, ch, record=True)
                self._events += [e.to_json() for e in ev.events]
                return tuple(sorted(ch.items()))
        return None

    def _answer_then_tick(self, step: Step) -> Applied:
        """A tick the guard holds back for a deferred request that has waited response_ticks
        (O14): the runtime answers it first, as g_tick says, the way the arbiter does: serve
        it if it fits (after demoting the demotable claims in its way, hard_demote), else
        refuse it.  The answers and the tick are reported as the target's own decisions."""
        decided = []
        for j in range(self.cfg.R):
            if self.s.requests[j].status != int(RS.DEFERRED):
                continue
            for i in range(self.cfg.K):
                demote = Step("demote", (j, i), ())
                ch = self._take(demote)
                if ch is not None:
                    decided.append(Step("demote", (j, i), ch))
            for a in ("admit", "refuse"):
                ch = self._take(Step(a, (j,), ()))
                if ch is not None:
                    decided.append(Step(a, (j,), ch))
                    break
        ch = self._take(step) if decided else None
        if ch is None:
            return Applied(False, note="tick not enabled", decided=tuple(decided))
        return Applied(True, ch, decided=tuple(decided) + (Step("tick", (), ch),))

    def view(self) -> Dict[str, Any]:
        return refinement_view(self.s)

    def events(self) -> List[Dict[str, Any]]:
        return list(self._events)
