"""Claims through the OpenAI-compatible server's ``vllm_xargs``, end to end on the live engine.

A request body is parsed by vLLM's own protocol class (``CompletionRequest``, as the server
parses a POST body) and vLLM's ``to_sampling_params`` makes the SamplingParams; the engine
with ClaimScheduler then serves it. ``vllm_xargs`` takes only flat values, so the claim is a
JSON string there (refinement/vllm_plugin.py docstring)."""
from __future__ import annotations

import json

import pytest

CLAIM = {"claim_id": "cA", "object_id": "A", "protection_mode": "hard_protected",
         "predicate": {"kind": "leading_prefix_at_least", "k": 60}, "footprint_blocks": 60}


def body(token_ids, xargs=None, max_tokens=1):
    out = {"model": "tiny-llama", "prompt": list(token_ids), "max_tokens": max_tokens,
           "temperature": 0, "ignore_eos": True}
    if xargs is not None:
        out["vllm_xargs"] = xargs
    return json.dumps(out)


def params(token_ids, xargs=None, max_tokens=1):
    """The SamplingParams vLLM's completion endpoint makes from this request body."""
    from vllm.entrypoints.openai.completion.protocol import CompletionRequest

    req = CompletionRequest.model_validate_json(body(token_ids, xargs, max_tokens))
    return req.to_sampling_params(max_tokens, {})


def claim_xargs(tenant="t1", **changes):
    return {"kvclaims_tenant": tenant, "kvclaims_claim": json.dumps(dict(CLAIM, **changes))}


def tokens(name, blocks):
    from kvclaims.refinement.vllm_core import fresh_token_ids, object_token_ids

    return object_token_ids(name, blocks) if name == "A" else fresh_token_ids(name, blocks)


def test_a_nested_claim_object_is_refused_by_vllms_own_request_validation(vllm_layer):
    from pydantic import ValidationError
    from vllm.entrypoints.openai.completion.protocol import CompletionRequest

    with pytest.raises(ValidationError) as err:
        CompletionRequest.model_validate_json(body([1, 2], {"kvclaims_claim": CLAIM}))
    assert {e["loc"][:2] for e in err.value.errors()} == {("vllm_xargs", "kvclaims_claim")}


def test_chat_and_completion_requests_carry_the_same_extra_args(vllm_layer):
    from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest

    xargs = dict(claim_xargs(), kvclaims_admit_future_reuse=False)
    chat = ChatCompletionRequest.model_validate_json(json.dumps(
        {"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}],
         "vllm_xargs": xargs}))
    want = {"kvclaims_tenant": "t1", "kvclaims_claim": json.dumps(CLAIM),
            "kvclaims_admit_future_reuse": 0}          # JSON false arrives as 0
    assert chat.to_sampling_params(1, {}).extra_args == want
    assert params([1, 2], xargs).extra_args == want


def test_claim_in_vllm_xargs_is_accepted_and_protects_the_prefix(fresh, serve):
    eng, arb = fresh("hard_refuse")
    a = serve(eng, [("A", tokens("A", 60), params(tokens("A", 60), claim_xargs()))])["A"]
    assert a.outputs[0].finish_reason == "length"
    c = arb.claims["cA"]
    assert (c.status.name, c.spec.owner_scope, c.spec.footprint_blocks) == (
        "MATERIALIZED", "t1", 60)
    assert arb.protected_resident == 60 and arb.interval("A") == (0, 60)
    b = serve(eng, [("B", tokens("B", 70), params(tokens("B", 70)))])["B"]
    assert b.outputs[0].finish_reason == "error"
    assert b.outputs[0].stop_reason == (
        "kvclaims: refused: blocking claims cA (infeasible: protected 60 + 70 > usable 80)")
    assert arb.interval("A") == (0, 60)
    assert (arb.counters["accepted"], arb.counters["materialized"], arb.counters["refused"],
            arb.counters["bad_input"]) == (1, 1, 1, 0)


def test_no_admit_in_vllm_xargs_is_honoured(fresh, serve):
    """vllm_xargs turns ``false`` into 0: that request still keeps no KV for reuse, while
    the same request without it leaves its four blocks cached."""
    eng, arb = fresh("hard_refuse")
    serve(eng, [("N", tokens("N", 4), params(tokens("N", 4),
                                              {"kvclaims_admit_future_reuse": False})),
                ("M", tokens("M", 4), params(tokens("M", 4)))])
    admitted = {e["request_id"].split("-")[0]: e["admit_future_reuse"]
                for e in arb.telemetry.events if e["type"] == "request_admitted"}
    assert admitted == {"N": False, "M": True}
    again = serve(eng, [(f"{x}2", tokens(x, 4) + [3] * 16, params([1])) for x in "NM"])
    assert (again["N2"].num_cached_tokens, again["M2"].num_cached_tokens) == (0, 64)


BAD = [  # (vllm_xargs, the whole stop reason)
    ({"kvclaims_claim": 5, "kvclaims_tenant": "t1"},
     "kvclaims_claim must be an object (or a JSON string of one)"),
    ({"kvclaims_claim": "{not json", "kvclaims_tenant": "t1"},
     "kvclaims_claim is not valid JSON (Expecting property name enclosed in double quotes)"),
    ({"kvclaims_claim": "[" * 20_000 + "]" * 20_000, "kvclaims_tenant": "t1"},
     "kvclaims_claim is longer than 4096 characters"),
    ({"kvclaims_claim": "[" * 2_000 + "]" * 2_000, "kvclaims_tenant": "t1"},
     "kvclaims_claim is nested deeper than 4 levels"),
    ({"kvclaims_claim": json.dumps([CLAIM]), "kvclaims_tenant": "t1"},
     "kvclaims_claim must be an object (or a JSON string of one)"),
    (claim_xargs(tenant=7), "kvclaims_tenant must be a non-empty string"),
    (claim_xargs(claim_id="c1", predicate={"kind": "leading_prefix_at_least", "k": "60"}),
     "predicate k and start must be integers"),
    (claim_xargs(claim_id="c2", footprint_blocks=60.0),
     "footprint_blocks must be a positive integer"),
    (claim_xargs(claim_id="c3", protection_mode="forever"),
     "unknown protection mode 'forever' (choose from hard_protected, soft_priority, "
     "demotable, offloadable, expiring, best_effort)"),
    (claim_xargs(claim_id="c4", footprint_blocks=-5),
     "footprint_blocks must be a positive integer"),
    (claim_xargs(claim_id="c5", object_id="A5",
                 predicate={"kind": "leading_prefix_at_least", "k": -3},
                 footprint_blocks=3),
     "claim c5: predicate must cover at least 1 block from a position >= 0"),
    (claim_xargs(claim_id="c6", protection_mode="expiring", duration=-1),
     "claim c6: duration must be > 0 when given"),
    (claim_xargs(tenant="t2", owner_scope="t1", claim_id="c7"),
     "tenant 't2' cannot claim for owner 't1'"),
    (claim_xargs(tenant="t2", claim_id="c8"), "object 'A' belongs to another tenant"),
    ({"kvclaims_release": 3, "kvclaims_tenant": "t1"}, "kvclaims_release: unknown claim 3"),
]


def test_malformed_claims_in_vllm_xargs_are_rejected_per_request(fresh, serve):
    eng, arb = fresh("hard_refuse", cap=80)
    serve(eng, [("owner", tokens("A", 60), params(tokens("A", 60), claim_xargs()))])
    requests = []
    for n, (xargs, _) in enumerate(BAD):
        prompt = tokens("A", 60) + [5] * 16
        requests += [(f"bad{n}", prompt, params(prompt, xargs)),
                     (f"good{n}", tokens(f"g{n}", 2), params(tokens(f"g{n}", 2), None, 2))]
    done = serve(eng, requests)
    for n, (_, msg) in enumerate(BAD):
        bad = done[f"bad{n}"].outputs[0]
        assert bad.finish_reason == "error" and bad.token_ids == [], n
        assert bad.stop_reason == f"kvclaims: bad claim: {msg}", (n, bad.stop_reason)
        good = done[f"good{n}"].outputs[0]
        assert good.finish_reason == "length" and len(good.token_ids) == 2, n
    assert arb.counters["bad_input"] == len(BAD)
    assert list(arb.claims) == ["cA"] and arb.interval("A") == (0, 60)
