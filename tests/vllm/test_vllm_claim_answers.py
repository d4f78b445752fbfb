"""Issue 8 on the live patched engine: every claim gets an answer the client sees, a failed or
rejected claim registers nothing, content shared by several objects is lost for each of them,
and blocks that become resident after acceptance are pinned the moment they are resident."""
from __future__ import annotations

import json

CLAIM = {"claim_id": "cA", "object_id": "A", "protection_mode": "hard_protected",
         "predicate": {"kind": "leading_prefix_at_least", "k": 60}, "footprint_blocks": 60}


def tokens(name, blocks):
    from kvclaims.refinement.vllm_core import fresh_token_ids, object_token_ids

    return object_token_ids(name, blocks) if name[:1] == "A" else fresh_token_ids(name, blocks)


def params(extra=None, max_tokens=1):
    from kvclaims.refinement import vllm_adapter as va

    return va.sampling_params(max_tokens, extra)


def test_rejected_and_failed_claims_are_answered_and_register_nothing(fresh, serve):
    from kvclaims.model.observer import reconstruct

    eng, arb = fresh("hard_refuse", cap=60)
    prompt = tokens("A", 62)
    done = serve(eng, [
        ("big", prompt, params({"kvclaims_tenant": "t1", "kvclaims_claim": dict(
            CLAIM, claim_id="c-big", footprint_blocks=61)})),
        ("bad", prompt, params({"kvclaims_tenant": "t1", "kvclaims_claim": dict(
            CLAIM, claim_id="c-bad", protection_mode="expiring", duration=-1)})),
        ("long", prompt, params({"kvclaims_tenant": "t1", "kvclaims_claim": dict(
            CLAIM, claim_id="c-long", protection_mode="expiring", duration=10 ** 12)})),
    ])
    big, bad, long_ = (done[r].outputs[0] for r in ("big", "bad", "long"))
    assert (big.finish_reason, big.stop_reason) == (
        "error", "kvclaims: claim rejected: footprint 61 exceeds the protected cap 60")
    assert (bad.finish_reason, bad.stop_reason) == (
        "error", "kvclaims: bad claim: claim c-bad: duration must be > 0 when given")
    assert (long_.finish_reason, long_.stop_reason) == (
        "error", "kvclaims: claim rejected: duration 1000000000000 exceeds the maximum 1000000")
    assert "A" not in arb.objects            # nothing squats the object id
    ok = serve(eng, [("t2", prompt, params({"kvclaims_tenant": "t2",
                                            "kvclaims_claim": dict(CLAIM, claim_id="c-t2")}))])
    assert ok["t2"].outputs[0].finish_reason == "length"
    assert arb.claims["c-t2"].status.name == "MATERIALIZED" and arb.objects["A"].owner == "t2"
    assert arb.counters["rejected"] == 2 and arb.counters["bad_input"] == 1
    assert reconstruct(arb.telemetry.events).findings == []


def test_shared_content_loss_is_seen_by_every_object(fresh, serve):
    """Two tenants' soft claims on objects with the same 60 blocks of content, and a third
    object that is a 20-block prefix of them (a system prompt): a 70-block request evicts
    the tail 50 blocks (positions 10..59); every object holding those positions sees its
    loss and all three claims are harmed, each reported."""
    from kvclaims.model.observer import reconstruct

    eng, arb = fresh("hard_refuse", cap=60)
    prompt = tokens("A", 60)
    soft = {"protection_mode": "soft_priority"}
    done = serve(eng, [
        ("a1", prompt, params({"kvclaims_tenant": "t1", "kvclaims_claim": dict(
            CLAIM, **soft, claim_id="c1", object_id="A")})),
    ])
    done.update(serve(eng, [
        ("a2", prompt, params({"kvclaims_tenant": "t2", "kvclaims_claim": dict(
            CLAIM, **soft, claim_id="c2", object_id="A2")})),
        ("sys", prompt, params({"kvclaims_tenant": "t3", "kvclaims_claim": dict(
            CLAIM, **soft, claim_id="c3", object_id="SYS", footprint_blocks=20,
            predicate={"kind": "leading_prefix_at_least", "k": 20})})),
    ]))
    assert all(d.outputs[0].finish_reason == "length" for d in done.values())
    assert [arb.claims[c].status.name for c in ("c1", "c2", "c3")] == ["MATERIALIZED"] * 3
    b = serve(eng, [("B", tokens("B", 70), params())])
    assert b["B"].outputs[0].finish_reason == "length"
    lost = {}
    for e in arb.telemetry.events:
        if e["type"] == "victim":
            lost.setdefault(e["object_id"], []).append(e["logical_position"])
    assert sorted(lost["A"]) == sorted(lost["A2"]) == list(range(10, 60))
    assert sorted(lost["SYS"]) == list(range(10, 20))      # the prefix object loses too
    assert [arb.claims[c].status.name for c in ("c1", "c2", "c3")] == ["HARMED"] * 3
    harmed = [e["claim_id"] for e in arb.telemetry.events if e["type"] == "claim_harmed"]
    assert sorted(harmed) == ["c1", "c2", "c3"]
    assert reconstruct(arb.telemetry.events).findings == []


def test_blocks_resident_after_acceptance_are_pinned_at_once(fresh, serve):
    """A hard claim of footprint 6 whose predicate (k=1) holds on arrival: the five blocks its
    own prefill stores are pinned as they are stored, so an allocation cannot take them."""
    from kvclaims.model.observer import reconstruct

    eng, arb = fresh("hard_refuse", cap=60)
    obj = tokens("A6", 6)
    serve(eng, [("warm", obj[:16] + tokens("w", 1), params())])
    claim = dict(CLAIM, claim_id="c6", object_id="A6", footprint_blocks=6,
                 predicate={"kind": "leading_prefix_at_least", "k": 1})
    serve(eng, [("own", obj + tokens("o", 1), params({"kvclaims_tenant": "t1",
                                                       "kvclaims_claim": json.dumps(claim)}))])
    mat = [e for e in arb.telemetry.events if e["type"] == "claim_materialized"]
    assert len(mat) == 1 and mat[0]["blocks_materialized"] == 1
    assert sorted(arb.objects["A6"].pinned) == list(range(6)) and arb.protected_resident == 6
    done = serve(eng, [("big", tokens("big", 74), params())])
    assert done["big"].outputs[0].finish_reason == "length"       # 74 = 80 - 6 fits
    assert not [e for e in arb.telemetry.events
                if e["type"] == "victim" and e["object_id"] == "A6"]
    assert arb.interval("A6") == (0, 6) and arb.claims["c6"].status.name == "MATERIALIZED"
    assert reconstruct(arb.telemetry.events).findings == []
