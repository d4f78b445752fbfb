"""The live engine: stock vLLM against the spec (target vllm-engine), and the claim arbiter as
a vLLM plugin (ClaimScheduler via scheduler_cls) on the 60/70/80 scenario, end to end:
refusal with an error finish naming the blocking claim, the prefix intact, the later full
hit (num_cached_tokens); demotion and expiry before loss; L7 from the engine's own
telemetry; malformed claims rejected per request while the engine serves the others."""
from __future__ import annotations

from kvclaims.spec.actions import Step
from kvclaims.spec.policy import POLICIES
from kvclaims.spec.state import ClaimConfig, Config, RequestConfig
from kvclaims.spec.vocab import Mode

CLAIM = {"claim_id": "cA", "object_id": "A", "protection_mode": "hard_protected",
         "predicate": {"kind": "leading_prefix_at_least", "k": 60}, "footprint_blocks": 60}


def run(engine, rid, tokens, extra=None, max_tokens=1, steps=8):
    """Submit one request and step the engine until nothing is left; its final output."""
    from vllm.inputs import TokensPrompt

    from kvclaims.refinement import vllm_adapter as va

    engine.engine.add_request(rid, TokensPrompt(prompt_token_ids=list(tokens)),
                              va.sampling_params(max_tokens, extra))
    done = {}
    for _ in range(steps):
        for out in engine.engine.step():
            if out.finished:
                done[out.request_id] = out
        if not engine.engine.has_unfinished_requests():
            break
    return done.get(rid)


def tokens(name, blocks):
    from kvclaims.refinement.vllm_core import fresh_token_ids, object_token_ids

    return object_token_ids(name, blocks) if name == "A" else fresh_token_ids(name, blocks)


def claim(mode="hard_protected", **kw):
    return {"kvclaims_tenant": "t1", "kvclaims_claim": dict(CLAIM, protection_mode=mode, **kw)}


def victims(arb):
    return [e["logical_position"] for e in arb.telemetry.events if e["type"] == "victim"]


def test_live_arbiter_refuses_keeps_the_prefix_and_serves_the_full_hit(fresh):
    from kvclaims.model.observer import reconstruct
    from kvclaims.model.telemetry import schema_errors

    eng, arb = fresh("hard_refuse")
    a = run(eng, "A", tokens("A", 60), claim())
    assert a.outputs[0].finish_reason == "length"
    assert arb.claims["cA"].status.name == "MATERIALIZED" and arb.protected_resident == 60
    b = run(eng, "B", tokens("B", 70))
    assert b.outputs[0].finish_reason == "error"
    assert b.outputs[0].stop_reason.startswith("kvclaims: refused: blocking claims cA")
    assert arb.interval("A") == (0, 60) and victims(arb) == []
    c = run(eng, "C", tokens("A", 60) + [3] * 16)
    assert c.num_cached_tokens == 960                      # the whole claimed prefix hits
    assert arb.counters["refused"] == 1 and arb.counters["materialized"] == 1
    from prometheus_client import REGISTRY     # where vLLM users scrape metrics
    assert REGISTRY.get_sample_value("kvclaims_claim_events_total",
                                     {"event": "refused", "policy": "hard_refuse"}) >= 1
    # L7: the engine's own telemetry reconstructs the outcome
    rec = reconstruct([dict(e) for e in arb.telemetry.events])
    assert [t for _, t in rec.claims["cA"].history] == [
        "claim_submitted", "claim_accepted", "claim_materialized"]
    assert [(c.blocking_claim_ids, c.feasibility, c.arbiter_action,
             c.capacity_shortfall_blocks) for c in rec.conflicts] == [
        (("cA",), "infeasible", "defer", 50), (("cA",), "infeasible", "refuse", 50)]
    refused = [r for r in rec.requests.values() if r.status == "refused"]
    assert len(refused) == 1 and rec.findings == []
    assert all(schema_errors(e) == [] for e in arb.telemetry.events)


def test_live_stock_engine_hit_shrinks_to_the_spec_prediction(vllm_layer):
    """Stock vLLM (target vllm-engine) replays L1 against the spec's native policy, and the
    later request's num_cached_tokens is what the spec's residency predicts."""
    from kvclaims.refinement.check import check_refinement
    from kvclaims.refinement.vllm_target import VllmEngineTarget

    cfg = Config(80, 60, (ClaimConfig(60, 0, 60, int(Mode.HARD_PROTECTED), 0, 0),),
                 (RequestConfig(70),))
    t = VllmEngineTarget()
    steps = [Step("materialize", (0,)), Step("admit", (0,)), Step("finish", (0,))]
    rep = check_refinement(t, cfg, POLICIES["native"], steps)
    assert rep.ok, rep.divergence.describe() if rep.divergence else rep.initial_diff
    assert rep.declined == []
    predicted = t.view()["claims[0].hi"] * 16              # the spec's state: [0, 10)
    assert predicted == 160
    assert t.driver.rerequest_cached_tokens("obj0", extra_blocks=1) == predicted


def test_live_stock_engine_no_admit_and_ignored_claim(vllm_layer):
    from kvclaims.refinement.check import check_refinement
    from kvclaims.refinement.vllm_target import VllmEngineTarget

    cfg = Config(80, 60, (ClaimConfig(60, 0, 60, int(Mode.HARD_PROTECTED), 0, 0),),
                 (RequestConfig(70), RequestConfig(5)))
    t = VllmEngineTarget()
    steps = [Step("materialize", (0,)), Step("submit", (0,)), Step("accept", (0,)),
             Step("admit", (0,), (("admit", False),)), Step("admit", (1,)),
             Step("finish", (0,)), Step("finish", (1,))]
    rep = check_refinement(t, cfg, POLICIES["native"], steps)
    assert rep.ok, rep.divergence.describe() if rep.divergence else rep.initial_diff
    assert rep.first_broken() == (4, ("O3", "O5", "O6"))
    assert t.view()["empty"] == 70                         # no-admit: nothing kept


def test_live_demotion_precedes_loss(fresh):
    from kvclaims.model.observer import reconstruct

    eng, arb = fresh("hard_demote")
    run(eng, "A", tokens("A", 60), claim("demotable"))
    b = run(eng, "B", tokens("B", 70))
    assert b.outputs[0].finish_reason == "length"
    types = [e["type"] for e in arb.telemetry.events]
    assert types.index("claim_demoted") < types.index("victim")
    assert victims(arb) == list(range(59, 9, -1)) and "claim_harmed" not in types
    assert reconstruct([dict(e) for e in arb.telemetry.events]).findings == []


def test_live_expiry_precedes_loss(fresh):
    from kvclaims.model.observer import reconstruct

    eng, arb = fresh("hard_refuse")
    run(eng, "A", tokens("A", 60), claim("expiring", duration=4))
    b = run(eng, "B", tokens("B", 70))
    assert b.outputs[0].finish_reason == "length"          # waited for the expiry
    types = [e["type"] for e in arb.telemetry.events]
    assert "request_refused" not in types
    assert types.index("claim_expired") < types.index("victim")
    assert len(victims(arb)) == 50 and "claim_harmed" not in types
    assert reconstruct([dict(e) for e in arb.telemetry.events]).findings == []


BAD = [
    ({"kvclaims_claim": "cA"}, "is not valid JSON"),
    ({"kvclaims_claim": "[1]"}, "must be an object"),
    ({"kvclaims_claim": "[" * 100_000 + "]" * 100_000, "kvclaims_tenant": "t1"},
     "is longer than 4096 characters"),
    ({"kvclaims_claim": '{"a":' * 50 + "1" + "}" * 50, "kvclaims_tenant": "t1"},
     "nested deeper than 4 levels"),
    ({"kvclaims_claim": dict(CLAIM, protection_mode="forever"), "kvclaims_tenant": "t1"},
     "unknown protection mode"),
    ({"kvclaims_claim": dict(CLAIM, footprint_blocks=-5), "kvclaims_tenant": "t1"},
     "footprint_blocks must be a positive integer"),
    ({"kvclaims_claim": dict(CLAIM, predicate={"kind": "leading_prefix_at_least", "k": "60"}),
      "kvclaims_tenant": "t1"}, "must be integers"),
    ({"kvclaims_claim": dict(CLAIM, claim_id="c-exp", duration=-1, protection_mode="expiring"),
      "kvclaims_tenant": "t1"}, "duration must be > 0"),
    ({"kvclaims_claim": dict(CLAIM, owner_scope="t1"), "kvclaims_tenant": "t2"},
     "cannot claim for owner"),
    ({"kvclaims_claim": dict(CLAIM, claim_id="c2"), "kvclaims_tenant": "t2"},
     "belongs to another tenant"),
    ({"kvclaims_claim": dict(CLAIM, bogus=1), "kvclaims_tenant": "t1"}, "unknown claim field"),
]


def test_bad_claims_are_rejected_per_request_and_the_engine_keeps_serving(fresh):
    from vllm.inputs import TokensPrompt

    from kvclaims.refinement import vllm_adapter as va

    eng, arb = fresh("hard_refuse", cap=80)
    run(eng, "owner", tokens("A", 60), claim())           # tenant t1 owns object A
    e = eng.engine
    for n, (extra, _) in enumerate(BAD):
        e.add_request(f"bad{n}", TokensPrompt(prompt_token_ids=tokens("A", 60) + [5] * 16),
                      va.sampling_params(1, extra))
        e.add_request(f"good{n}", TokensPrompt(prompt_token_ids=tokens(f"g{n}", 2)),
                      va.sampling_params(2))
    done = {}
    for _ in range(20):
        for out in e.step():
            if out.finished:
                done[out.request_id] = out
        if not e.has_unfinished_requests():
            break
    for n, (_, msg) in enumerate(BAD):
        bad = done[f"bad{n}"].outputs[0]
        assert bad.finish_reason == "error", n
        assert bad.stop_reason.startswith("kvclaims: bad claim:") and msg in bad.stop_reason, \
            (n, bad.stop_reason)
        good = done[f"good{n}"].outputs[0]
        assert good.finish_reason == "length" and len(good.token_ids) == 2
    assert arb.counters["bad_input"] == len(BAD)
    assert list(arb.claims) == ["cA"] and arb.interval("A") == (0, 60)
