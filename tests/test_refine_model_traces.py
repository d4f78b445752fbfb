"""Refinement of the MicroRuntime on every counterexample the checker finds (bad policies and
seeded mutations): every step of the runtime is a step of the spec, and the runtime breaks the
obligation where the spec's trace does, except where its own (allowed) choice of victims or
names differs from the solver's, which is pinned here too."""
from __future__ import annotations

import pytest

from kvclaims.checker.bmc import bmc
from kvclaims.model.ledger import ClaimLedger
from kvclaims.model.runtime import MicroLedger, MicroRuntime
from kvclaims.refinement.check import check_refinement
from kvclaims.refinement.model_target import ModelTarget
from kvclaims.spec.actions import Step, complete_choices
from kvclaims.spec.algebra import CONCRETE as C
from kvclaims.spec.obligations import OBLIGATIONS
from kvclaims.spec.policy import MUTATIONS, POLICIES
from kvclaims.spec.state import ClaimConfig, Config, RequestConfig
from kvclaims.spec.vocab import Mode

# (policy or mutation, obligation it breaks, shortest trace depth).  The solver picks the
# sizes, the claim shapes and the victims of its counterexample freely (and its pick depends
# on the process's z3 history), so what is asserted is what holds for every pick: the
# runtime refines every step, and wherever it made the same choices as the trace it breaks
# the same obligation at the same step.  Fixed scenarios with exact outcomes per policy are
# the litmus tests (tests/test_refine_model_litmus.py).
CASES = [
    ("native", "O3", 4), ("soft_priority", "O7", 2), ("write_no_admit", "O2", 4),
    ("block_count", "O5", 4), ("late_release", "O4", 4), ("misattribute", "O8", 1),
    ("drop_protection_guard", "O3", 4), ("demotion_after_loss", "O4", 4),
    ("forget_blocking_claim", "O8", 4), ("skip_expiry_check", "O3", 5),
    ("count_blocks", "O5", 4), ("skip_owner_check", "O10", 3),
]


@pytest.mark.parametrize("name,ob,depth", CASES)
def test_model_refines_counterexample(name, ob, depth):
    pol = POLICIES.get(name) or MUTATIONS[name]
    tr = bmc(pol, [ob], max_depth=depth + 1).found[ob]
    assert tr.depth == depth
    rep = check_refinement(ModelTarget(), tr.config, pol, tr.steps)
    assert rep.ok, rep.divergence.describe() if rep.divergence else rep.initial_diff
    assert rep.declined == []
    same = all(
        all(dict(s.choices).get(k, v) == v for k, v in complete_choices(tr.config, pol, st).items())
        for s, st in zip(rep.steps, tr.steps))
    if same:
        assert rep.first_broken()[0] == depth and ob in rep.first_broken()[1]


def test_same_choices_reproduce_the_violation_exactly():
    """native's counterexample is forced (no eligible choice but the claim's tail), so the
    runtime takes the trace's choices and breaks O3 at the trace's last step."""
    pol = POLICIES["native"]
    cfg = Config(usable=4, cap=4, claims=(ClaimConfig(3, 0, 3, int(Mode.HARD_PROTECTED), 0, 0),),
                 requests=(RequestConfig(2),))
    steps = [Step("submit", (0,)), Step("accept", (0,)), Step("materialize", (0,)),
             Step("admit", (0,), (("take[0]", 1),))]
    rep = check_refinement(ModelTarget(), cfg, pol, steps)
    assert rep.ok and rep.declined == []
    assert rep.first_broken() == (4, ("O3", "O5", "O6"))


# --- the checker is not vacuous: a runtime bug is a divergence -----------------------------------


L3 = Config(usable=80, cap=60, claims=(ClaimConfig(60, 0, 60, int(Mode.HARD_PROTECTED), 0, 0),),
            requests=(RequestConfig(70),))
L3_STEPS = [Step("submit", (0,)), Step("accept", (0,)), Step("materialize", (0,)),
            Step("admit", (0,))]


def test_a_runtime_that_forgets_to_pin_diverges(monkeypatch):
    monkeypatch.setattr(MicroLedger, "wants_pin", lambda self, obj: False)
    rep = check_refinement(ModelTarget(), L3, POLICIES["hard_refuse"], L3_STEPS)
    assert not rep.ok and rep.divergence.index == 4
    assert rep.divergence.describe().startswith(
        "step 4 admit(0,): divergence: the spec does not allow it with the choices")


def test_a_runtime_that_evicts_from_the_middle_diverges(monkeypatch):
    real = MicroRuntime.evict_object_block

    def middle(self, object_id):
        obj = self.objects[object_id]
        ps = obj.positions()
        if len(ps) < 3:
            return real(self, object_id)
        b = self._block_of(obj, ps[1])
        h = self.pool.drop_hash(b)
        self._lost(b, h, "evict")
        return self.ledger.settle("evict")[0]

    monkeypatch.setattr(MicroRuntime, "evict_object_block", middle)
    steps = [Step("materialize", (0,)), Step("evict", (0,))]
    rep = check_refinement(ModelTarget(), L3, POLICIES["native"], steps)
    d = rep.divergence
    assert d.index == 2 and ("claims[0].lo", 0, ("non-interval", (0,) + tuple(range(2, 60)))) \
        in d.view_diff


def test_a_runtime_that_skips_the_harm_event_diverges(monkeypatch):
    monkeypatch.setattr(MicroLedger, "claim_event",
                        lambda self, t, c, **kw: None if t == "claim_harmed"
                        else ClaimLedger.claim_event(self, t, c, **kw))
    rep = check_refinement(ModelTarget(), L3, POLICIES["write_no_admit"], L3_STEPS)
    assert rep.divergence.index == 4
    assert rep.divergence.event_diff == (
        "events: spec has ('claim_harmed', 0, None, None) x1, target x0",)


def test_cli_refine_reads_itf_traces(tmp_path, capsys):
    from kvclaims.checker.itf import write_itf
    from kvclaims.cli import main
    tr = bmc(POLICIES["late_release"], ["O4"], max_depth=5).found["O4"]
    (tmp_path / "late").mkdir()
    write_itf(tr, tmp_path / "late" / "trace.itf.json")
    assert main(["refine", str(tmp_path)]) == 0
    # the counterexample z3 returns may break more than O4 (e.g. O13 when the claim it demotes
    # late is hard_protected): the CLI must name exactly what the spec says the trace breaks
    broken = [o for o, inv in OBLIGATIONS.items()
              if not inv.holds(C, tr.config, POLICIES["late_release"], tr.states[-1])]
    assert "O4" in broken
    assert capsys.readouterr().out.endswith(
        f"refines (4 steps, declined []); breaks {', '.join(broken)} at step 4\n")
    (tmp_path / "bad.json").write_text("{}")
    assert main(["refine", str(tmp_path / "bad.json")]) == 2
    assert main(["refine"]) == 2


def test_model_target_reports_events_in_the_spec_vocabulary():
    t = ModelTarget()
    rep = check_refinement(t, L3, POLICIES["hard_refuse"], L3_STEPS[:3] + [
        Step("defer", (0,)), Step("refuse", (0,))])
    assert rep.ok and rep.declined == []
    conflicts = [e for e in t.events() if e["type"] == "conflict"]
    assert [(e["request_id"], e["blocking_claim_ids"], e["feasibility"], e["arbiter_action"])
            for e in conflicts] == [(0, (True,), 1, "defer"), (0, (True,), 1, "refuse")]
    raw = [e for e in t.rt.telemetry.events if e["type"] == "conflict"]
    assert [(e["request_id"], e["blocking_claim_ids"], e["feasibility"]) for e in raw] == [
        ("r0", ["c0"], "infeasible")] * 2
