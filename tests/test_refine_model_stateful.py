"""Refinement of the MicroRuntime against the spec on random workloads (issue 4, item 6b).

A Hypothesis RuleBasedStateMachine per policy: a random configuration (claims and requests of
random sizes, modes, owners, identities), then random interleavings of every spec action.
After every step the refinement checker must find the runtime's step allowed by the spec, the
abstract states equal and the claim-level events the same; under a conformant policy every
obligation must hold as well.  A failure shrinks to a minimal runnable program."""
from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from kvclaims.model.observer import reconstruct
from kvclaims.refinement.check import Refiner
from kvclaims.refinement.model_target import ModelTarget
from kvclaims.spec.actions import ACTIONS, Step
from kvclaims.spec.policy import POLICIES
from kvclaims.spec.state import ClaimConfig, Config, RequestConfig
from kvclaims.spec.vocab import Mode

# >= 500 examples per policy always (CI included); steps per example keep the file ~60 s.
EXAMPLES = int(os.environ.get("KVCLAIMS_REFINE_EXAMPLES", "500"))
STEPS = int(os.environ.get("KVCLAIMS_REFINE_STEPS", "14"))

pick = st.integers(0, 5)
ACTION_NAMES = sorted(ACTIONS)


@st.composite
def configs(draw):
    """Small pools where claims and requests compete: footprints and needs near the pool."""
    usable = draw(st.integers(2, 10))
    claims = []
    for _ in range(draw(st.integers(1, 3))):
        f = draw(st.integers(1, usable))
        start = draw(st.integers(0, f - 1))
        length = draw(st.integers(1, f - start))
        mode = draw(st.sampled_from(list(Mode)))
        dur = draw(st.integers(1, 3)) if mode == Mode.EXPIRING else 0
        claims.append(ClaimConfig(f, start, length, int(mode), draw(st.integers(0, 1)),
                                  draw(st.integers(0, 1)), dur))
    reqs = tuple(RequestConfig(draw(st.integers(1, usable)), draw(st.integers(0, 1)))
                 for _ in range(draw(st.integers(1, 3))))
    return Config(usable, draw(st.integers(0, usable)), tuple(claims), reqs)


class RefineMachine(RuleBasedStateMachine):
    policy_name = "hard_refuse"

    @initialize(cfg=configs())
    def setup(self, cfg):
        self.cfg = cfg
        self.pol = POLICIES[self.policy_name]
        self.target = ModelTarget(run_id="hypothesis")
        self.refiner = Refiner(self.target, cfg, self.pol)
        assert self.refiner.initial_diff == ()

    def _slots(self, action):
        """Slot tuples for which the spec can take `action` now (victim choices aside):
        rules draw among these, so runs go deep; `any_step` covers the rest."""
        from kvclaims.spec.actions import ACTIONS, enabled
        from kvclaims.spec.algebra import CONCRETE
        from kvclaims.spec.vocab import RESPONSIBLE, RequestStatus
        s = self.refiner.state
        out = []
        for sl in ACTIONS[action].slots(self.cfg):
            if action == "admit":
                ok = s.requests[sl[0]].status in (RequestStatus.NONE, RequestStatus.DEFERRED)
            elif action == "release":
                ok = s.claims[sl[0]].status in RESPONSIBLE
            elif action == "evict":
                ok = s.claims[sl[0]].hi > s.claims[sl[0]].lo
            else:
                ok = enabled(CONCRETE, self.cfg, self.pol, s, Step(action, sl))
            if ok:
                out.append(sl)
        return out

    def _do(self, action, k=0, **choices):
        slots = self._slots(action)
        if not slots:
            return
        self._check(Step(action, slots[k % len(slots)], tuple(choices.items())))

    def _check(self, step):
        rep = self.refiner.step(step)
        assert rep.verdict != "divergence", rep.describe()
        if self.pol.conformant:
            assert rep.broken == (), f"{rep.label}: {rep.broken}"

    @rule(k=pick)
    def submit(self, k):
        self._do("submit", k)

    @rule(k=pick)
    def accept(self, k):
        self._do("accept", k)

    @rule(k=pick)
    def reject(self, k):
        self._do("reject", k)

    @rule(k=pick)
    def materialize(self, k):
        self._do("materialize", k)

    @rule(k=pick, admit=st.booleans())
    def admit(self, k, admit):
        self._do("admit", k, admit=admit)

    @rule(k=pick)
    def finish(self, k):
        self._do("finish", k)

    @rule(k=pick)
    def evict(self, k):
        self._do("evict", k)

    @rule(k=pick)
    def demote(self, k):
        self._do("demote", k)

    @rule(k=pick, actor=st.integers(0, 1))
    def release(self, k, actor):
        self._do("release", k, actor=actor)

    @rule(k=pick)
    def defer(self, k):
        self._do("defer", k)

    @rule(k=pick)
    def refuse(self, k):
        self._do("refuse", k)

    @rule(k=pick)
    def reuse(self, k):
        self._do("reuse", k)

    @rule(i=pick, j=pick, admit=st.booleans())
    def claim_then_press(self, i, j, admit):
        """The contract's story in one rule: claim object i (submit, accept, materialize, each
        only when the spec can), then admit request j against it."""
        i %= self.cfg.K
        for action in ("submit", "accept", "materialize"):
            if (i,) in self._slots(action):
                self._check(Step(action, (i,)))
        j %= self.cfg.R
        if (j,) in self._slots("admit"):
            self._check(Step("admit", (j,), (("admit", admit),)))

    @rule(action=st.sampled_from(ACTION_NAMES), a=pick, b=pick)
    def any_step(self, action, a, b):
        """Any instance at all, enabled or not: the runtime must decline what the spec
        forbids (or take it exactly as the spec would)."""
        from kvclaims.spec.actions import ACTIONS
        slots = ACTIONS[action].slots(self.cfg)
        self._check(Step(action, slots[(a * 7 + b) % len(slots)]))

    @invariant()
    def observer_agrees(self):
        """O6 on the runtime's own telemetry: what an observer rebuilds from the events alone
        is the runtime's lifecycle of every claim and request."""
        if not hasattr(self, "target"):
            return
        rec = reconstruct(self.target.rt.telemetry.events)
        rt = self.target.rt
        for cid, c in rt.claims.items():
            assert rec.claims[cid].status == c.status.name.lower(), cid
        for rid, r in rt.requests.items():
            got = rec.requests[rid].status if rid in rec.requests else "none"
            assert got == r.status.name.lower(), rid
        assert not [f for f in rec.findings if f.kind in ("truncated", "reordered")]


MACHINES = {}
for _name in POLICIES:
    MACHINES[_name] = type(f"Refine_{_name}", (RefineMachine,), {"policy_name": _name})


# issue 15 changed the spec's native policy (no conflict event, no refusal: the request
# waits); the MicroRuntime follows in the lead's runtime rewrite
PENDING: set = set()


@pytest.mark.parametrize("policy", [
    pytest.param(p, marks=pytest.mark.xfail(
        strict=True, reason="runtime side of issue 15 pending (lead)")) if p in PENDING else p
    for p in POLICIES])
def test_model_refines_spec(policy):
    """>= 500 random workloads per policy; no divergence; conformant policies keep O1-O10."""
    machine = MACHINES[policy]
    machine.TestCase.settings = settings(
        max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        derandomize=True, database=None)
    machine.TestCase().runTest()
