"""Shared content: one loss, seen by every object that holds it (issue 8, item 2).

The spec cannot express two objects sharing content: each claim slot has its own object, an
interval of its own positions, and a block belongs to one object. So the case is a
runtime-level test, on every target that runs a pool: the MicroRuntime, vLLM core (stock:
the native ledger), vLLM core with the arbiter, and the live patched engine (the scheduler's
own decisions).

Usable 80 (a vLLM pool of 81). Three objects over one content (one cache identity):
``A`` (60 blocks, tenant0), ``A2`` (the same 60 blocks, tenant1: another tenant's object with
identical tokens) and ``S`` (the first 10 blocks: a system prompt that is a prefix of the
longer conversation). Each carries a soft_priority claim (cA k=60, cA2 k=60, cS k=10),
accepted and materialized; soft claims pin nothing. A fresh 75-block request takes the 20
never-used blocks and evicts 55 of the shared blocks, deepest first (positions 59..5).
Expected, exactly: A and A2 each see 55 victims and end with positions 0..4; S sees 5
victims (positions 9..5) and ends with 0..4. Under a conformant policy each of the three
claims is harmed once (each predicate went from true to false), naming the request; under
stock vLLM's native ledger nothing is reported as harm, but every object's interval shows
the loss."""
from __future__ import annotations

from collections import Counter

import pytest

from kvclaims.spec.actions import Step
from kvclaims.spec.policy import POLICIES
from kvclaims.spec.state import Config, RequestConfig
from kvclaims.spec.vocab import ClaimStatus, Mode

USABLE, LONG, SHORT, NEED = 80, 60, 10, 75
LOST = NEED - (USABLE - LONG)                       # 55 blocks evicted, positions 59..5
OBJECTS = {"A": ("tenant0", LONG), "A2": ("tenant1", LONG), "S": ("tenant0", SHORT)}
CLAIM = {"A": "cA", "A2": "cA2", "S": "cS"}
VICTIMS = {"A": LOST, "A2": LOST, "S": SHORT - (LONG - LOST)}      # 55, 55, 5
SURVIVE = (0, LONG - LOST)                                          # positions 0..4


def _spec(oid: str, identity):
    from kvclaims.model.claims import ClaimSpec, Predicate

    owner, k = OBJECTS[oid]
    return ClaimSpec(CLAIM[oid], owner, identity, oid, Predicate(0, k), k,
                     Mode.SOFT_PRIORITY)


def _check_events(events, harm: bool):
    victims = Counter(e["object_id"] for e in events if e["type"] == "victim")
    assert dict(victims) == VICTIMS
    for oid in OBJECTS:
        pos = sorted((e["logical_position"] for e in events
                      if e["type"] == "victim" and e["object_id"] == oid), reverse=True)
        assert pos == list(range(OBJECTS[oid][1] - 1, SURVIVE[1] - 1, -1)), oid
    harmed = Counter(e["claim_id"] for e in events if e["type"] == "claim_harmed")
    assert dict(harmed) == ({c: 1 for c in CLAIM.values()} if harm else {})
    materialized = Counter(e["claim_id"] for e in events if e["type"] == "claim_materialized")
    assert dict(materialized) == {c: 1 for c in CLAIM.values()}


def test_shared_content_loss_on_the_micro_runtime():
    from kvclaims.model.runtime import MicroRuntime
    from kvclaims.model.claims import CacheIdentity
    from kvclaims.refinement.vllm_core import object_token_ids

    rt = MicroRuntime(USABLE + 1, policy="hard_refuse", protected_cap_blocks=USABLE)
    tokens = object_token_ids("A", LONG, 16)
    ident = CacheIdentity()
    for oid, (_, n) in OBJECTS.items():
        rt.register_object(oid, tokens[:n * 16], ident)
    assert rt.materialize("A")
    for oid in OBJECTS:
        assert rt.submit_claim(_spec(oid, ident)).accepted
    rt.new_request("r0", object_token_ids("r0", NEED, 16))
    assert rt.admit("r0").taken
    _check_events(rt.telemetry.events, harm=True)
    for oid in OBJECTS:
        assert rt.objects[oid].interval() == SURVIVE, oid
        assert rt.claims[CLAIM[oid]].status == ClaimStatus.HARMED


@pytest.fixture(scope="module")
def targets(vllm_layer):
    from kvclaims.refinement import vllm_target

    return vllm_target


@pytest.mark.parametrize("name,policy", [("VllmCoreTarget", "native"),
                                         ("VllmPatchedTarget", "hard_refuse"),
                                         ("VllmPatchedEngineTarget", "hard_refuse"),
                                         ("VllmPatchedEngineTarget", "hard_demote")])
def test_shared_content_loss_on_vllm(targets, name, policy):
    from kvclaims.model.claims import CacheIdentity
    from kvclaims.refinement import vllm_adapter as va
    from kvclaims.refinement.vllm_core import BLOCK_SIZE, object_token_ids

    t = getattr(targets, name)()
    t.reset(Config(USABLE, USABLE, (), (RequestConfig(NEED),)), POLICIES[policy])
    salt = targets.salt(0)
    tokens = object_token_ids("A", LONG, BLOCK_SIZE)
    probe = va.make_request("probe:A", tokens, block_size=BLOCK_SIZE, cache_salt=salt)
    hashes = va.request_block_hashes(probe)
    for oid, (owner, n) in OBJECTS.items():
        t.arb.register_object(oid, hashes[:n], owner=owner, salt=salt)
    res = t.driver.materialize("A", LONG, salt=salt)
    assert res.admitted
    t.arb.settle("materialize:A")
    ident = CacheIdentity(salt_namespace=salt)
    for oid in OBJECTS:
        assert t.arb.submit(_spec(oid, ident)).accepted, oid
    app = t.apply(Step("admit", (0,)))
    # the engine's scheduler admits it (soft claims protect nothing): one decision, admit(0)
    assert app.taken, app.note
    if app.decided:
        assert [d.label().split(" {")[0] for d in app.decided] == ["admit(0,)"]
    events = t.events()
    _check_events(events, harm=policy != "native")
    for e in events:
        if e["type"] == "claim_harmed":
            assert e["request_id"] == "r0"
    for oid in OBJECTS:
        assert t.arb.interval(oid) == SURVIVE, oid
    want = ClaimStatus.MATERIALIZED if policy == "native" else ClaimStatus.HARMED
    assert {oid: t.arb.claims[CLAIM[oid]].status for oid in OBJECTS} == {
        oid: want for oid in OBJECTS}
