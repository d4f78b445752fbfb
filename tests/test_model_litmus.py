"""The litmus suite (docs/CONTRACT.md section 8) on the MicroRuntime, driven through its own API
and arbiter at the reference sizes: protected resident 60, active prefill 70, usable 80 (a pool
of 81 blocks with the null block).  Each expectation is the contract's, exactly; L7 and the
findings come from the events alone (the observer)."""
from __future__ import annotations

import pytest

from kvclaims.model.claims import CacheIdentity, ClaimSpec, Predicate
from kvclaims.model.observer import reconstruct
from kvclaims.model.runtime import MicroRuntime, synthetic_tokens
from kvclaims.spec.vocab import ClaimStatus as CS, Lowering, Mode, RequestStatus as RS

ID = CacheIdentity(model_id="tiny-llama", salt_namespace="tenant-a")


def pool(policy, cap=60, usable=80):
    rt = MicroRuntime(usable + 1, policy, protected_cap_blocks=cap)
    rt.register_object("A", synthetic_tokens("A", 60), ID)
    rt.new_request("B", synthetic_tokens("B", 70), ID)
    return rt


def claim(mode=Mode.HARD_PROTECTED, k=60, duration=None, cid="claim-A"):
    return ClaimSpec(cid, "tenant-a", ID, "A", Predicate.leading_prefix_at_least(k), 60, mode,
                     duration)


def victims(rt, obj="A"):
    return [e for e in rt.telemetry.events if e["type"] == "victim" and e["object_id"] == obj]


def types(rt):
    return [e["type"] for e in rt.telemetry.events]


def test_L1_no_claim_no_harm():
    rt = pool("hard_refuse")
    rt.materialize("A")
    assert rt.arbitrate("B") == "admitted"
    assert len(victims(rt)) == 50
    assert [v["logical_position"] for v in victims(rt)] == list(range(59, 9, -1))  # tail first
    assert "claim_accepted" not in types(rt) and "claim_harmed" not in types(rt)
    assert rt.objects["A"].interval() == (0, 10)
    assert reconstruct(rt.telemetry.events).findings == []


def test_L1_rejected_claim_is_not_harmed():
    rt = pool("hard_refuse", cap=59)
    rt.materialize("A")
    d = rt.submit_claim(claim())
    assert (d.accepted, d.reason) == (False, "footprint 60 exceeds the protected cap 59")
    assert rt.arbitrate("B") == "admitted"
    assert len(victims(rt)) == 50 and "claim_harmed" not in types(rt)
    assert all(v["claim_id"] is None and v["protected"] is False for v in victims(rt))


def test_L2_write_no_admit_is_not_live_bounding():
    rt = pool("hard_refuse")
    rt.materialize("A")
    r = rt.admit("B", admit_future_reuse=False)
    assert r.taken and r.admit_future_reuse is False
    assert len(rt.requests["B"].blocks) == 70 and len(victims(rt)) == 50
    rt.finish("B")
    assert rt.lookup(rt.requests["B"].hashes) == 0          # future reuse denied
    assert rt.pool.unhashed_free == 70                       # its blocks went back unhashed


def test_L3_hard_claim_makes_infeasibility_explicit():
    rt = pool("hard_refuse")
    rt.materialize("A")
    assert rt.submit_claim(claim()).accepted
    assert rt.claims["claim-A"].status == CS.MATERIALIZED
    assert rt.arbitrate("B") == "deferred"
    assert rt.arbitrate("B") == "refused"
    assert victims(rt) == [] and rt.requests["B"].status == RS.REFUSED
    conflicts = [e for e in rt.telemetry.events if e["type"] == "conflict"]
    assert [(c["arbiter_action"], c["blocking_claim_ids"], c["feasibility"],
             c["protected_resident_blocks"], c["active_live_blocks_required"],
             c["resident_plus_active_blocks"], c["capacity_shortfall_blocks"],
             c["free_blocks_before_allocate"]) for c in conflicts] == [
        ("defer", ["claim-A"], "infeasible", 60, 70, 130, 50, 20),
        ("refuse", ["claim-A"], "infeasible", 60, 70, 130, 50, 20)]


def test_L4_demotion_precedes_later_loss():
    rt = pool("hard_demote")
    rt.materialize("A")
    rt.submit_claim(claim(Mode.DEMOTABLE))
    assert [rt.arbitrate("B") for _ in range(3)] == ["deferred", "demoted", "admitted"]
    t = types(rt)
    first_victim = t.index("victim")
    assert t.index("claim_demoted") < first_victim
    assert len(victims(rt)) == 50 and "claim_harmed" not in t
    assert rt.claims["claim-A"].status == CS.DEMOTED
    assert reconstruct(rt.telemetry.events).findings == []


def test_L5_expiry_precedes_later_loss():
    rt = pool("hard_refuse")
    rt.materialize("A")
    rt.submit_claim(claim(Mode.EXPIRING, duration=2))
    assert rt.arbitrate("B") == "deferred"
    assert rt.tick() == [] and rt.tick() == ["claim-A"]
    assert rt.arbitrate("B") == "admitted"
    t = types(rt)
    assert t.index("claim_expired") < t.index("victim")
    assert len(victims(rt)) == 50 and "claim_harmed" not in t
    assert reconstruct(rt.telemetry.events).findings == []


def test_L6_block_survival_is_not_materialization():
    rt = MicroRuntime(81, "block_count", protected_cap_blocks=60)
    rt.register_object("A", synthetic_tokens("A", 60), ID)
    rt.new_request("B", synthetic_tokens("B", 21), ID)
    rt.materialize("A")
    rt.submit_claim(claim(k=59))
    assert rt.arbitrate("B") == "admitted"
    obj = rt.objects["A"]
    assert obj.positions() == list(range(1, 60)) and obj.leading() == 0
    c = rt.claims["claim-A"]
    assert c.spec.predicate.holds(*obj.interval()) is False
    assert c.status == CS.MATERIALIZED                 # counted blocks, so no harm reported
    kinds = [(f.kind, f.claim_id) for f in reconstruct(rt.telemetry.events).findings]
    assert kinds == [("protected_victim", "claim-A"), ("unreported_loss", "claim-A")]


def test_L7_trace_reconstructs_the_outcome():
    rt = pool("hard_refuse")
    rt.materialize("A")
    rt.submit_claim(claim())
    rt.arbitrate("B")
    rt.arbitrate("B")
    rec = reconstruct([dict(e) for e in rt.telemetry.events])
    assert [t for _, t in rec.claims["claim-A"].history] == [
        "claim_submitted", "claim_accepted", "claim_materialized"]
    assert rec.claims["claim-A"].status == "materialized"
    assert [(c.request_id, c.blocking_claim_ids, c.capacity_shortfall_blocks, c.feasibility,
             c.arbiter_action) for c in rec.conflicts] == [
        ("B", ("claim-A",), 50, "infeasible", "defer"),
        ("B", ("claim-A",), 50, "infeasible", "refuse")]
    assert rec.requests["B"].status == "refused" and rec.findings == []


@pytest.mark.parametrize("policy,mode,verdict", [
    ("soft_priority", Mode.HARD_PROTECTED, Lowering.UNSOUND),
    ("soft_priority", Mode.SOFT_PRIORITY, Lowering.APPROXIMATE),
    ("hard_refuse", Mode.HARD_PROTECTED, Lowering.SOUND)])
def test_C1_soft_priority_is_not_a_sound_hard_lowering(policy, mode, verdict):
    assert MicroRuntime(81, policy).lowering(mode) == verdict


def test_C1_soft_priority_loses_the_hard_claim_under_pressure():
    rt = pool("soft_priority")
    rt.materialize("A")
    assert rt.submit_claim(claim()).accepted
    assert rt.arbitrate("B") == "admitted"
    assert len(victims(rt)) == 50 and all(v["protected"] for v in victims(rt))
    assert "claim_harmed" not in types(rt)
    kinds = {f.kind for f in reconstruct(rt.telemetry.events).findings}
    assert kinds == {"protected_victim", "unreported_loss"}
