"""Tenants on a shared server (issue 9), on the live in-process engine with ClaimScheduler
under ``identity = "server"``: the tenant is the server's attestation in extra_args (what the
OpenAI server's middleware puts there, refinement/identity.py). Each attack is 200 requests
in one batch (tiny prompts, max_tokens=1); every answer is counted."""
from __future__ import annotations

import pytest

from kvclaims.model.tenancy import attest, tenant_salt

SECRET = "operator-secret"
N = 200


def claim(cid, obj, k, mode="hard_protected", **more):
    return {"claim_id": cid, "object_id": obj, "protection_mode": mode,
            "predicate": {"kind": "leading_prefix_at_least", "k": k}, **more}


def who(tenant, **extra):
    return {"kvclaims_identity": attest(SECRET, tenant), **extra}


def tokens(name, blocks):
    from kvclaims.refinement.vllm_core import fresh_token_ids, object_token_ids

    return object_token_ids(name, blocks) if name.isupper() else fresh_token_ids(name, blocks)


@pytest.fixture
def run(serve):
    """Serve (request_id, token_ids, extra_args, cache_salt) together, max_tokens=1: the
    finished outputs by request id, all of them."""
    from vllm import SamplingParams

    def go(eng, requests, steps=60):
        done = serve(eng, [(rid, toks, SamplingParams(max_tokens=1, temperature=0,
                                                      ignore_eos=True, extra_args=extra), salt)
                           for rid, toks, extra, salt in requests], steps)
        assert len(done) == len(requests)
        return done
    return go


def answers(done):
    """finish reason / stop reason -> how many requests got it."""
    out = {}
    for o in done.values():
        key = (o.outputs[0].finish_reason, o.outputs[0].stop_reason)
        out[key] = out.get(key, 0) + 1
    return out


@pytest.fixture
def server(fresh, monkeypatch):
    """The shared patched engine with a fresh arbiter under identity = server (the
    operator's secret in the environment, as the engine core inherits it)."""
    monkeypatch.setenv("KVCLAIMS_IDENTITY_SECRET", SECRET)

    def make(policy="hard_refuse", cap=60, **conf):
        return fresh(policy, cap, identity="server", **conf)
    return make


def owned(run, eng, arb, blocks=4, mode="hard_protected"):
    """t1 claims object A (its prompt's first `blocks` blocks): materialized."""
    done = run(eng, [("A", tokens("A", blocks), who("t1", kvclaims_claim=claim(
        "cA", "A", blocks, mode)), None)])
    assert done["A"].outputs[0].finish_reason == "length"
    assert arb.claims["cA"].status.name == "MATERIALIZED"
    assert arb.claims["cA"].spec.owner_scope == "t1"


SPOOFS = ([{"kvclaims_tenant": "t1"}] * 60
          + [{"kvclaims_identity": f"t1:{i:064x}"} for i in range(60)]
          + [{"kvclaims_identity": attest(f"guess{i}", "t1")} for i in range(60)]
          + [{"kvclaims_identity": "t1"}] * 20)


def test_spoofed_tenants_are_refused_and_squat_nothing(server, run):
    eng, arb = server()
    owned(run, eng, arb)
    reqs = [(f"s{i}", tokens(f"s{i}", 1), dict(x, kvclaims_release="cA",
                                             kvclaims_claim=claim(f"x{i}", "X", 1)), None)
            for i, x in enumerate(SPOOFS)]
    assert len(reqs) == N
    assert answers(run(eng, reqs)) == {
        ("error", "kvclaims: bad claim: kvclaims_tenant in the request is not trusted "
                  "(identity = server): the tenant comes from the server's credentials"): 60,
        ("error", "kvclaims: bad claim: kvclaims_identity is not a valid server "
                  "attestation"): 140}
    assert arb.claims["cA"].status.name == "MATERIALIZED" and "X" not in arb.objects
    assert (arb.counters["released"], arb.counters["accepted"], arb.counters["bad_input"]) == (
        0, 1, N)


def test_another_tenant_never_releases_a_claim(server, run):
    eng, arb = server()
    owned(run, eng, arb)
    reqs = [(f"r{i}", tokens(f"r{i}", 1), who(f"t{i + 2}", kvclaims_release="cA"), None)
            for i in range(N - 1)] + [("anon", tokens("anon", 1), {"kvclaims_release": "cA"},
                                       None)]
    got = answers(run(eng, reqs))
    assert sum(got.values()) == N and all(f == "error" for f, _ in got)
    assert got[("error", "kvclaims: bad claim: kvclaims_release: tenant 't2' may not "
                         "release claim 'cA': only its owner may")] == 1
    assert all(r.startswith("kvclaims: bad claim: kvclaims_release: tenant ") and
               r.endswith("may not release claim 'cA': only its owner may") for _, r in got)
    denied = [e for e in arb.telemetry.events if e["type"] == "release_denied"]
    assert len(denied) == N and arb.claims["cA"].status.name == "MATERIALIZED"
    done = run(eng, [("own", tokens("own", 1), who("t1", kvclaims_release="cA"), None)])
    assert done["own"].outputs[0].finish_reason == "length"
    assert arb.claims["cA"].status.name == "RELEASED"


@pytest.mark.parametrize("mode, attempts", [("hard_protected", N), ("demotable", 2)])
def test_another_tenants_requests_demote_only_demotable_claims(server, run, mode, attempts):
    """hard_demote: t2's requests of 30 blocks cannot fit beside t1's 60 (usable 80). A hard
    claim is never demoted: every request is refused naming it. A demotable one is demoted
    by the first request, which is then served (mode honesty, O13)."""
    eng, arb = server("hard_demote", 60)
    owned(run, eng, arb, 60, mode)
    reqs = [(f"d{i}", tokens(f"d{i}", 30), who("t2"), None) for i in range(attempts)]
    got = answers(run(eng, reqs))
    if mode == "demotable":
        assert got == {("length", None): attempts} and arb.counters["demoted"] == 1
        assert arb.claims["cA"].status.name == "DEMOTED"
        return
    assert got == {("error", "kvclaims: refused: blocking claims cA (infeasible: "
                             "protected 60 + 30 > usable 80)"): N}
    assert arb.counters["demoted"] == 0 and arb.counters["refused"] == N
    assert arb.claims["cA"].status.name == "MATERIALIZED"


GUESSES = ([None, "t1", "2:t1", "kvclaims:2:t1", tenant_salt("t1", None), "kvclaims:-:"]
           + [f"guess-{i}" for i in range(94)])


def test_no_other_tenant_hits_a_claimed_prefix_whatever_salt_it_sends(server, run):
    """t2 with 100 salts (guesses of t1's among them), 60 other tenants with no salt, 40
    anonymous requests with salts: each (tenant, salt) distinct (a repeated one hits its own
    tenant's copy: it would count here), so any cached token would be t1's claimed prefix. 0 hits; t1's own request hits the 4 claimed blocks."""
    eng, arb = server()
    owned(run, eng, arb)
    prompt = tokens("A", 4) + [7]
    reqs = ([(f"g{i}", prompt, who("t2"), g) for i, g in enumerate(GUESSES)]
            + [(f"o{i}", prompt, who(f"o{i}"), None) for i in range(60)]
            + [(f"n{i}", prompt, {}, g) for i, g in enumerate(GUESSES[:40])])
    assert len(reqs) == N and len(set(GUESSES)) == len(GUESSES)
    done = run(eng, reqs)
    hits = [o.num_cached_tokens for o in done.values()]
    assert hits == [0] * N
    assert arb.claims["cA"].status.name == "MATERIALIZED"
    own = run(eng, [("own", prompt, who("t1"), None)])["own"]
    assert own.num_cached_tokens == 64


def test_a_failed_claim_leaves_the_object_free(server, run):
    eng, arb = server("hard_refuse", 8)
    got = run(eng, [
        ("q1", tokens("X", 2), who("t2", kvclaims_claim=claim("s1", "X", 2, duration=-1)),
         None),
        ("q2", tokens("X", 2), who("t2", kvclaims_claim=claim("", "X", 2)), None),
        ("q3", tokens("X", 10), who("t2", kvclaims_claim=claim("s3", "X", 10)), None)])
    assert [(o.outputs[0].finish_reason, o.outputs[0].stop_reason) for o in
            (got["q1"], got["q2"], got["q3"])] == [
        ("error", "kvclaims: bad claim: claim s1: duration must be > 0 when given"),
        ("error", "kvclaims: bad claim: claim_id must be a non-empty string"),
        ("error", "kvclaims: claim rejected: footprint 10 exceeds the protected cap 8")]
    assert "X" not in arb.objects
    ok = run(eng, [("t1", tokens("X", 2), who("t1", kvclaims_claim=claim("c1", "X", 2)),
                    None)])
    assert ok["t1"].outputs[0].finish_reason == "length"
    assert arb.claims["c1"].status.name == "MATERIALIZED"


def test_the_limit_plus_one_claim_is_rejected_naming_it_and_records_return(server, run):
    eng, arb = server("hard_refuse", 60, keep_ended=0,
                      limits={"tenant_claims": 3, "claims": 4, "protected_blocks": 6})
    base = arb.records()
    mine = [(f"a{i}", tokens(f"a{i}", 1), who("ta", kvclaims_claim=claim(
        f"ca{i}", f"a{i}", 1, "best_effort")), None) for i in range(4)]
    theirs = [(f"b{i}", tokens(f"b{i}", 3), who("tb", kvclaims_claim=claim(
        f"cb{i}", f"b{i}", 3)), None) for i in range(2)]
    got = run(eng, mine + theirs)
    assert {k: v.outputs[0].stop_reason for k, v in got.items()
            if v.outputs[0].finish_reason == "error"} == {
        "a3": "kvclaims: claim rejected: limit tenant_claims = 3 reached of tenant 'ta' "
              "(would be 4)",
        "b1": "kvclaims: claim rejected: limit claims = 4 reached (would be 5)"}
    assert arb.records()["claims"] == 4
    rel = [(f"r{c}", tokens(f"r{c}", 1), who(t, kvclaims_release=c), None)
           for c, t in (("ca0", "ta"), ("ca1", "ta"), ("ca2", "ta"), ("cb0", "tb"))]
    assert answers(run(eng, rel)) == {("length", None): 4}
    assert arb.records() == base
