"""Tenants on a shared server (issue 9), on the model: the MicroRuntime and the ClaimLedger it
shares with the vLLM arbiter, with the identity, salt and limit rules of model/tenancy.py.
Each attack is tried 200 times; every answer is counted."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from kvclaims.model.claims import CacheIdentity, ClaimError, ClaimSpec, Predicate
from kvclaims.model.ledger import ClaimLedger
from kvclaims.model.pool import BlockPool
from kvclaims.model.runtime import MicroRuntime, PoolResidency, synthetic_tokens
from kvclaims.model.tenancy import (ClaimLimits, TenantIdentity, attest, tenant_salt)
from kvclaims.spec.vocab import ClaimStatus as CS, Mode, RESPONSIBLE

SECRET = "operator-secret"
SERVER = TenantIdentity("server", SECRET)
N = 200


def ident(tenant, salt=None):
    return CacheIdentity(salt_namespace=tenant_salt(tenant, salt))


def spec(cid, owner, obj, k, mode=Mode.HARD_PROTECTED, identity=None, duration=None):
    return ClaimSpec(cid, owner, identity or ident(owner), obj, Predicate(0, k), k, mode,
                     duration)


def claimed_runtime(policy="hard_demote", mode=Mode.HARD_PROTECTED, blocks=30):
    """t1 (attested) claims object A of `blocks` blocks, materialized, in a pool of 40."""
    rt = MicroRuntime(41, policy, protected_cap_blocks=30)
    t1 = SERVER.resolve({"kvclaims_identity": attest(SECRET, "t1")})
    rt.register_object("A", synthetic_tokens("A", blocks), ident(t1))
    assert rt.ledger.claim_object(spec("cA", t1, "A", blocks, mode),
                                  rt.objects["A"].hashes).accepted
    assert rt.materialize("A") and rt.claims["cA"].status == CS.MATERIALIZED
    return rt


SPOOFS = ([{"kvclaims_tenant": "t1"}] * 50
          + [{"kvclaims_identity": f"t1:{i:064x}"} for i in range(50)]
          + [{"kvclaims_identity": attest(f"guess{i}", "t1")} for i in range(50)]
          + [{"kvclaims_identity": attest(SECRET, "t2").replace("t2", "t1", 1)}] * 25
          + [{"kvclaims_identity": "t1"}, {"kvclaims_identity": 7}] * 12
          + [{"kvclaims_tenant": "t1", "kvclaims_identity": attest(SECRET, "t1")}])


def test_a_spoofed_tenant_is_refused_with_a_reason_every_time():
    assert len(SPOOFS) == N
    reasons = {}
    for extra in SPOOFS:
        with pytest.raises(ClaimError) as err:
            SERVER.resolve(extra)
        reasons[str(err.value)] = reasons.get(str(err.value), 0) + 1
    assert reasons == {
        "kvclaims_tenant in the request is not trusted (identity = server): the tenant "
        "comes from the server's credentials": 51,
        "kvclaims_identity is not a valid server attestation": 149}
    # what the server attests is believed; client mode believes the body (configured only)
    assert SERVER.resolve({"kvclaims_identity": attest(SECRET, "t1")}) == "t1"
    assert SERVER.resolve({}) is None
    assert TenantIdentity("client").resolve({"kvclaims_tenant": "t1"}) == "t1"
    # a server without a secret believes no attestation at all (fail closed)
    with pytest.raises(ClaimError):
        TenantIdentity("server", "").resolve({"kvclaims_identity": attest(SECRET, "t1")})
    with pytest.raises(ValueError, match="kvclaims.identity must be one of server, client"):
        TenantIdentity("anyone")


def test_cross_tenant_release_never_ends_the_claim():
    rt = claimed_runtime()
    actors = [f"t{i}" for i in range(2, N + 1)] + [""]
    assert [rt.release_claim("cA", a) for a in actors] == [True] * N
    denied = [e for e in rt.telemetry.events if e["type"] == "release_denied"]
    assert len(denied) == N and {e["reason"] for e in denied} == {
        "only the owner may release a claim"}
    assert rt.claims["cA"].status == CS.MATERIALIZED and rt.counters["released"] == 0
    assert rt.release_claim("cA", "t1") and rt.claims["cA"].status == CS.RELEASED


@pytest.mark.parametrize("mode, demoted", [(Mode.HARD_PROTECTED, 0), (Mode.DEMOTABLE, 1)])
def test_another_tenants_requests_demote_only_a_demotable_claim(mode, demoted):
    """hard_demote, 200 requests of t2 that cannot fit beside t1's claim (30 + 20 > 40):
    a hard claim is never demoted (every request refused naming it); a demotable one is
    demoted by the first (mode honesty, O13)."""
    rt = claimed_runtime("hard_demote", mode)
    outcomes = {}
    for i in range(N):
        rid = f"t2-{i}"
        rt.new_request(rid, synthetic_tokens(rid, 20), ident("t2"))
        while (out := rt.arbitrate(rid)) in ("deferred", "demoted"):
            pass
        if out == "admitted":
            rt.finish(rid)
        outcomes[out] = outcomes.get(out, 0) + 1
    assert rt.counters["demoted"] == demoted
    if demoted:
        assert outcomes == {"admitted": N} and rt.claims["cA"].status == CS.DEMOTED
        return
    assert outcomes == {"refused": N}
    assert rt.claims["cA"].status == CS.MATERIALIZED
    refused = [e for e in rt.telemetry.events if e["type"] == "request_refused"]
    assert len(refused) == N and all(e["blocking_claim_ids"] == ["cA"] for e in refused)


GUESSES = ([None, "", "t1", "2:t1", "kvclaims:2:t1:", tenant_salt("t1", None),
            tenant_salt("t1", ""), "kvclaims:-:"] + [f"guess-{i}" for i in range(192)])


def test_no_other_tenant_hits_a_claimed_prefix_whatever_salt_it_sends():
    rt = claimed_runtime("hard_refuse", blocks=4)
    tokens = synthetic_tokens("A", 4) + synthetic_tokens("tail", 1)
    hits = [rt.lookup(rt.new_request(f"t2-{i}", tokens, ident("t2", g)).hashes)
            for i, g in enumerate(GUESSES)]
    anon = [rt.lookup(rt.new_request(f"anon-{i}", tokens,
                                     CacheIdentity(salt_namespace=tenant_salt(None, g))).hashes)
            for i, g in enumerate(GUESSES)]
    assert len(hits) == len(anon) == N and hits.count(0) == N and anon.count(0) == N
    # the owner's own requests do hit it: the lookup is not blind
    assert rt.lookup(rt.new_request("t1-own", tokens, ident("t1")).hashes) == 4


def test_tenant_salt_is_injective():
    pairs = [(t, s) for t in (None, "a", "a:b", "a:", "-", "1:a") for s in
             (None, "b", ":b", "b:", "a:b", "1:a:")]
    salts = {tenant_salt(t, s) for t, s in pairs if s is not None}
    assert len(salts) == len([p for p in pairs if p[1] is not None])


def ledger(limits, keep_ended=0, usable=64):
    return ClaimLedger(PoolResidency(BlockPool(usable + 1)), policy="hard_refuse",
                       limits=limits, keep_ended=keep_ended)


def content(name, n=2):
    return [hash((name, p)) for p in range(n)]


def test_a_failed_claim_squats_nothing():
    led = ledger(ClaimLimits(), usable=40)
    with pytest.raises(ClaimError, match="duration must be > 0"):
        led.claim_object(spec("s1", "t2", "X", 2, duration=-1), content("X"))
    with pytest.raises(ClaimError, match="claim_id must be a non-empty string"):
        led.claim_object(spec("", "t2", "X", 2), content("X"))
    big = led.claim_object(spec("s2", "t2", "X", 40), content("X", 40))
    assert not big.accepted and big.reason == "footprint 40 exceeds the protected cap 30"
    assert "X" not in led.objects and led.records()["hashes"] == 0
    assert led.claim_object(spec("c1", "t1", "X", 2), content("X")).accepted
    with pytest.raises(ClaimError, match="object 'X' belongs to another tenant"):
        led.claim_object(spec("s3", "t2", "X", 2), content("X"))
    assert led.live_claims(led.objects["X"]) == ["c1"]


def test_the_limit_plus_one_claim_is_rejected_naming_the_limit_and_records_return():
    lim = ClaimLimits(tenant_claims=3, tenant_protected_blocks=5, claims=5,
                      protected_blocks=8)
    led = ledger(lim)
    base = led.records()

    def claim(cid, tenant, k, mode=Mode.HARD_PROTECTED):
        return led.claim_object(spec(cid, tenant, cid, k, mode), content(cid, k))

    assert [claim(f"a{i}", "ta", 1, Mode.BEST_EFFORT).accepted for i in range(3)] == [True] * 3
    assert claim("a3", "ta", 1, Mode.BEST_EFFORT).reason == (
        "limit tenant_claims = 3 reached of tenant 'ta' (would be 4)")
    assert claim("b0", "tb", 2).accepted and claim("b1", "tb", 2).accepted
    assert claim("b2", "tb", 1).reason == "limit claims = 5 reached (would be 6)"
    assert led.release("a0", "ta")
    assert claim("b3", "tb", 2).reason == (
        "limit tenant_protected_blocks = 5 reached of tenant 'tb' (would be 6)")
    assert claim("c0", "tc", 4).accepted and led.release("a1", "ta")
    assert claim("c1", "tc", 1).reason == "limit protected_blocks = 8 reached (would be 9)"
    assert led.counters["rejected"] == 4 and "c1" not in led.objects
    for cid, owner in (("a2", "ta"), ("b0", "tb"), ("b1", "tb"), ("c0", "tc")):
        assert led.release(cid, owner)
    assert led.records() == base


def test_bad_limits_are_one_line_value_errors():
    with pytest.raises(ValueError, match=r"unknown limit\(s\) \['claim'\]"):
        ClaimLimits.from_conf({"claim": 3})
    with pytest.raises(ValueError, match="kvclaims.limits.claims must be an integer >= 0"):
        ClaimLimits.from_conf({"claims": -1})
    assert ClaimLimits.from_conf({"claims": 2}).to_json()["claims"] == 2


OPS = st.lists(st.tuples(st.sampled_from(["claim", "release"]), st.sampled_from("abc"),
                         st.sampled_from("xyz"), st.integers(1, 3),
                         st.sampled_from([Mode.HARD_PROTECTED, Mode.BEST_EFFORT])),
               max_size=40)


@settings(max_examples=60, deadline=None)
@given(OPS)
def test_limits_and_ownership_hold_under_any_sequence(ops):
    lim = ClaimLimits(tenant_claims=2, tenant_protected_blocks=4, claims=4,
                      protected_blocks=6)
    led = ledger(lim)
    for n, (op, tenant, obj, k, mode) in enumerate(ops):
        if op == "claim":
            try:
                led.claim_object(spec(f"c{n}", tenant, obj, k, mode), content(obj, 3))
            except ClaimError:
                pass
        else:
            for cid, c in list(led.claims.items()):
                if c.spec.object_id == obj and c.status in RESPONSIBLE:
                    led.release(cid, tenant)
        live = [c.spec for c in led.claims.values() if c.status in RESPONSIBLE]
        assert len(live) <= 4
        assert sum(s.footprint_blocks for s in live
                   if s.protection_mode == Mode.HARD_PROTECTED) <= 6
        for t in "abc":
            mine = [s for s in live if s.owner_scope == t]
            assert len(mine) <= 2
            assert sum(s.footprint_blocks for s in mine
                       if s.protection_mode == Mode.HARD_PROTECTED) <= 4
        # an object is known only while an accepted claim binds it, to one tenant
        for o in led.objects.values():
            owners = {led.claims[c].spec.owner_scope for c in led.live_claims(o)}
            assert len(owners) == 1
