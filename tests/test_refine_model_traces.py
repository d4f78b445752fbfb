"""Refinement of the MicroRuntime on every counterexample the checker finds (bad policies and
seeded mutations): every step of the runtime is a step of the spec, and the runtime breaks the
obligation where the spec's trace does, except where its own (allowed) choice of victims or
names differs from the solver's, which is pinned here too."""
from __future__ import annotations

import pytest

from kvclaims.checker.bmc import bmc
from kvclaims.refinement.check import check_refinement
from kvclaims.refinement.model_target import ModelTarget
from kvclaims.spec.policy import MUTATIONS, POLICIES

# (policy or mutation, obligation, trace depth, what the runtime breaks first: (step, ids))
CASES = [
    ("native", "O3", 4, (4, ("O3", "O5", "O6"))),
    ("soft_priority", "O7", 2, (2, ("O7",))),
    ("write_no_admit", "O2", 4, (4, ("O2", "O3"))),
    # A block-counting runtime gives up the head first.  Whether that also breaks the
    # predicate depends on the claim shape the solver picked (contiguous_range(1, 1) survives
    # losing the head, leading_prefix_at_least does not): either outcome is a refinement.
    ("block_count", "O5", 4, {(4, ("O3",)), (4, ("O3", "O5", "O6"))}),
    ("late_release", "O4", 4, (4, ("O4",))),
    # the solver names claims nobody submitted; this runtime's misattribution (every claim
    # on record) names none when none is on record
    ("misattribute", "O8", 1, None),
    ("drop_protection_guard", "O3", 4, (4, ("O3",))),
    ("demotion_after_loss", "O4", 4, (4, ("O4",))),
    ("forget_blocking_claim", "O8", 4, (4, ("O8",))),
    ("skip_expiry_check", "O3", 5, (5, ("O3",))),
    ("count_blocks", "O5", 4, {(4, ("O3",)), (4, ("O3", "O5", "O6"))}),
    ("skip_owner_check", "O10", 3, (3, ("O10",))),
]


@pytest.mark.parametrize("name,ob,depth,first", CASES)
def test_model_refines_counterexample(name, ob, depth, first):
    pol = POLICIES.get(name) or MUTATIONS[name]
    tr = bmc(pol, [ob], max_depth=depth + 1).found[ob]
    assert tr.depth == depth
    rep = check_refinement(ModelTarget(), tr.config, pol, tr.steps)
    assert rep.ok, rep.divergence.describe() if rep.divergence else rep.initial_diff
    assert rep.declined == []
    if isinstance(first, set):
        assert rep.first_broken() in first
    else:
        assert rep.first_broken() == first


# --- the checker is not vacuous: a runtime bug is a divergence -----------------------------------

from kvclaims.model.runtime import MicroRuntime  # noqa: E402
from kvclaims.spec.actions import Step  # noqa: E402
from kvclaims.spec.state import ClaimConfig, Config, RequestConfig  # noqa: E402
from kvclaims.spec.vocab import Mode  # noqa: E402

L3 = Config(usable=80, cap=60, claims=(ClaimConfig(60, 0, 60, int(Mode.HARD_PROTECTED), 0, 0),),
            requests=(RequestConfig(70),))
L3_STEPS = [Step("submit", (0,)), Step("accept", (0,)), Step("materialize", (0,)),
            Step("admit", (0,))]


def test_a_runtime_that_forgets_to_pin_diverges(monkeypatch):
    monkeypatch.setattr(MicroRuntime, "_placement", lambda self, obj: 0)
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
        v = self._victim(b, self.pool.block_hash[b], "evict")
        self.pool.drop_hash(b)
        return v

    monkeypatch.setattr(MicroRuntime, "evict_object_block", middle)
    steps = [Step("materialize", (0,)), Step("evict", (0,))]
    rep = check_refinement(ModelTarget(), L3, POLICIES["native"], steps)
    d = rep.divergence
    assert d.index == 2 and ("claims[0].lo", 0, ("non-interval", (0,) + tuple(range(2, 60)))) \
        in d.view_diff


def test_a_runtime_that_skips_the_harm_event_diverges(monkeypatch):
    monkeypatch.setattr(MicroRuntime, "_claim_event",
                        lambda self, t, c, **kw: None if t == "claim_harmed"
                        else self._emit(t, **self._claim_fields(c), **kw))
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
    assert capsys.readouterr().out.endswith("refines (4 steps, declined []); breaks O4 at "
                                            "step 4\n")
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
