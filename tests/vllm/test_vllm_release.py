"""``kvclaims_release`` in a request's extra_args, on the live engine with ClaimScheduler:
the owner's release ends the claim with its event before any loss, so a later eviction is
ordinary post-release loss, never harm; anyone else's release is refused, reported
(``release_denied``) and leaves the claim protecting its prefix."""
from __future__ import annotations

from kvclaims.model.observer import reconstruct
from kvclaims.model.telemetry import schema_errors

OWNER = {"kvclaims_tenant": "t1",
         "kvclaims_claim": {"claim_id": "cA", "object_id": "A",
                            "protection_mode": "hard_protected", "footprint_blocks": 60,
                            "predicate": {"kind": "leading_prefix_at_least", "k": 60}}}


def sp(extra=None):
    from kvclaims.refinement import vllm_adapter as va

    return va.sampling_params(1, extra)


def tokens(name, blocks):
    from kvclaims.refinement.vllm_core import fresh_token_ids, object_token_ids

    return object_token_ids(name, blocks) if name == "A" else fresh_token_ids(name, blocks)


def claimed(fresh, serve):
    """The engine after tenant t1's request A (60 blocks) materialized claim cA."""
    eng, arb = fresh("hard_refuse", cap=60)
    a = serve(eng, [("A", tokens("A", 60), sp(OWNER))])["A"]
    assert a.outputs[0].finish_reason == "length"
    assert arb.claims["cA"].status.name == "MATERIALIZED" and arb.protected_resident == 60
    return eng, arb


def test_owner_release_ends_the_claim_before_any_loss(fresh, serve):
    eng, arb = claimed(fresh, serve)
    r = serve(eng, [("R", tokens("R", 1),
                     sp({"kvclaims_tenant": "t1", "kvclaims_release": "cA"}))])["R"]
    assert r.outputs[0].finish_reason == "length"             # the releasing request is served
    assert arb.claims["cA"].status.name == "RELEASED" and arb.protected_resident == 0
    assert arb.interval("A") == (0, 60)                        # released, nothing lost yet
    b = serve(eng, [("B", tokens("B", 70), sp())])["B"]
    assert b.outputs[0].finish_reason == "length"             # no claim stands in the way
    events = arb.telemetry.events
    types = [e["type"] for e in events]
    victims = [e for e in events if e["type"] == "victim"]
    # B takes the 19 blocks never used (80 usable - 60 of A - 1 of R), then 51 of A's,
    # tail first: released blocks went back to the free queue tail first, before R's block
    assert [e["logical_position"] for e in victims] == list(range(59, 8, -1))
    assert {(e["protected"], e["claim_id"]) for e in victims} == {(False, None)}
    assert arb.interval("A") == (0, 9)
    released = [e for e in events if e["type"] == "claim_released"]
    assert [(e["claim_id"], e["actor"]) for e in released] == [("cA", "t1")]
    assert types.index("claim_released") < types.index("victim")
    assert "claim_harmed" not in types and "release_denied" not in types
    assert (arb.counters["released"], arb.counters["harmed"], arb.counters["refused"],
            arb.counters["bad_input"]) == (1, 0, 0, 0)
    rec = reconstruct([dict(e) for e in events])
    assert rec.findings == [] and rec.claims["cA"].status == "released"
    assert all(schema_errors(e) == [] for e in events)


def test_release_by_another_tenant_is_refused_and_reported(fresh, serve):
    eng, arb = claimed(fresh, serve)
    done = serve(eng, [
        ("R2", tokens("R", 1), sp({"kvclaims_tenant": "t2", "kvclaims_release": "cA"})),
        ("R0", tokens("S", 1), sp({"kvclaims_release": "cA"})),        # no tenant at all
        ("G", tokens("G", 2), sp())])
    assert done["R2"].outputs[0].finish_reason == "error"
    assert done["R2"].outputs[0].stop_reason == (
        "kvclaims: bad claim: kvclaims_release: tenant 't2' may not release claim 'cA': "
        "only its owner may")
    assert done["R0"].outputs[0].stop_reason == (
        "kvclaims: bad claim: kvclaims_release: tenant '' may not release claim 'cA': "
        "only its owner may")
    assert done["G"].outputs[0].finish_reason == "length"      # everyone else is served
    denied = [e for e in arb.telemetry.events if e["type"] == "release_denied"]
    assert [(e["claim_id"], e["object_id"], e["actor"], e["reason"]) for e in denied] == [
        ("cA", "A", "t2", "only the owner may release a claim"),
        ("cA", "A", "", "only the owner may release a claim")]
    # the claim is unchanged: still materialized, pinned, and still protecting its prefix
    assert arb.claims["cA"].status.name == "MATERIALIZED" and arb.protected_resident == 60
    b = serve(eng, [("B", tokens("B", 70), sp())])["B"]
    assert b.outputs[0].stop_reason.startswith("kvclaims: refused: blocking claims cA")
    assert arb.interval("A") == (0, 60)
    types = [e["type"] for e in arb.telemetry.events]
    assert "claim_released" not in types and "victim" not in types
    assert (arb.counters["released"], arb.counters["bad_input"], arb.counters["refused"]) == (
        0, 2, 1)
    assert reconstruct([dict(e) for e in arb.telemetry.events]).findings == []
