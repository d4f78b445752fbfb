"""Shared content and late residency on the MicroRuntime (issue 8): it keeps its claims in the
one ClaimLedger, so a block belongs to every object whose tokens it carries (two objects with
the same tokens; a system prompt that is a prefix of a conversation) and each of them sees its
loss; a block of a protected object that becomes resident after acceptance is pinned at once."""
from __future__ import annotations

from kvclaims.model.claims import CacheIdentity, ClaimSpec, Predicate
from kvclaims.model.observer import reconstruct
from kvclaims.model.runtime import MicroRuntime, synthetic_tokens
from kvclaims.spec.vocab import ClaimStatus as CS, Mode, RequestStatus as RS

ID = CacheIdentity(model_id="tiny-llama", salt_namespace="shared")


def claim(cid, owner, obj, k, footprint, mode=Mode.SOFT_PRIORITY):
    return ClaimSpec(cid, owner, ID, obj, Predicate.leading_prefix_at_least(k), footprint, mode)


def victims(rt, obj):
    return [e["logical_position"] for e in rt.telemetry.events
            if e["type"] == "victim" and e["object_id"] == obj]


def harmed(rt):
    return [e["claim_id"] for e in rt.telemetry.events if e["type"] == "claim_harmed"]


def test_identical_objects_both_see_the_loss():
    """Issue 8 item 2 on the MicroRuntime: A (soft claim, tenant-a) and A2 (same tokens,
    tenant-b's claim); a 70-block request evicts 50 blocks: both objects lose them, both
    claims are judged by their predicates, and the observer finds nothing unreported."""
    rt = MicroRuntime(81, "hard_refuse", protected_cap_blocks=60)
    toks = synthetic_tokens("A", 60)
    rt.register_object("A", toks, ID)
    rt.register_object("A2", toks, ID)
    rt.new_request("B", synthetic_tokens("B", 70), ID)
    assert rt.materialize("A")
    assert rt.objects["A2"].n_present == 60            # the same blocks, shared
    assert not rt.materialize("A2")
    assert rt.submit_claim(claim("cA", "tenant-a", "A", 60, 60)).accepted
    assert rt.submit_claim(claim("cA2", "tenant-b", "A2", 10, 60, Mode.BEST_EFFORT)).accepted
    assert rt.claims["cA"].status == rt.claims["cA2"].status == CS.MATERIALIZED
    assert rt.arbitrate("B") == "admitted"
    assert victims(rt, "A") == victims(rt, "A2") == list(range(59, 9, -1))
    assert harmed(rt) == ["cA"]                        # A2's predicate (k=10) still holds
    assert rt.claims["cA2"].status == CS.MATERIALIZED
    assert rt.objects["A"].interval() == rt.objects["A2"].interval() == (0, 10)
    assert reconstruct(rt.telemetry.events).findings == []


def test_system_prompt_is_a_prefix_of_the_conversation():
    """P (10 blocks) is the first 10 blocks of C (40): storing C makes P resident; a
    request that eats into P's positions harms both claims, each at its own positions."""
    rt = MicroRuntime(81, "hard_refuse")
    conv = synthetic_tokens("conversation", 40)
    rt.register_object("P", conv[:10 * 16], ID)
    rt.register_object("C", conv, ID)
    rt.new_request("X", synthetic_tokens("X", 75), ID)
    assert rt.materialize("C")
    assert rt.objects["P"].positions() == list(range(10))
    stored = [e["object_id"] for e in rt.telemetry.events if e["type"] == "object_stored"]
    assert sorted(stored) == ["C", "P"]
    rt.submit_claim(claim("cC", "tenant-b", "C", 40, 40))  # C's blocks to tier 1, tail first
    rt.submit_claim(claim("cP", "tenant-a", "P", 10, 10))  # already there
    assert rt.arbitrate("X") == "admitted"            # 40 free blocks, then 35 of C's
    assert victims(rt, "C") == list(range(39, 4, -1))
    assert victims(rt, "P") == list(range(9, 4, -1))
    assert sorted(harmed(rt)) == ["cC", "cP"]
    assert reconstruct(rt.telemetry.events).findings == []


def test_hard_claim_on_the_conversation_protects_the_shared_prompt():
    """A hard claim on C pins its blocks, which are P's too: P (soft) loses nothing, and the
    shared blocks count once as protected resident."""
    rt = MicroRuntime(81, "hard_refuse")
    conv = synthetic_tokens("conversation", 40)
    rt.register_object("P", conv[:10 * 16], ID)
    rt.register_object("C", conv, ID)
    rt.new_request("X", synthetic_tokens("X", 45), ID)
    rt.materialize("C")
    rt.submit_claim(claim("cP", "tenant-a", "P", 10, 10))
    rt.submit_claim(claim("cC", "tenant-b", "C", 40, 40, Mode.HARD_PROTECTED))
    assert rt.protected_resident() == 40
    assert rt.arbitrate("X") == "deferred"
    assert rt.requests["X"].named == ("cC",)
    assert victims(rt, "P") == victims(rt, "C") == [] and harmed(rt) == []


def test_blocks_resident_after_acceptance_are_pinned_at_once():
    """Issue 8 item 3: a hard claim with footprint 6 and predicate k=1 materializes with one
    block; the other five become resident later (a request with the object's tokens computes
    them) and are pinned that moment: never victims, counted as protected."""
    rt = MicroRuntime(21, "hard_refuse")
    toks = synthetic_tokens("A", 6)
    rt.register_object("S", toks[:16], ID)             # its first block only
    rt.register_object("A", toks, ID)
    assert rt.materialize("S") and rt.objects["A"].positions() == [0]
    assert rt.submit_claim(claim("cA", "tenant-a", "A", 1, 6, Mode.HARD_PROTECTED)).accepted
    assert rt.claims["cA"].status == CS.MATERIALIZED
    rt.new_request("R", toks, ID)
    assert rt.arbitrate("R") == "admitted"
    rt.finish("R")
    blocks = [rt.pool.cache[h] for h in rt.objects["A"].hashes]
    assert rt.objects["A"].positions() == list(range(6))
    assert all(rt.pool.ref[b] == 1 and rt.pool.tier[b] == -1 for b in blocks)
    assert rt.protected_resident() == 6
    rt.new_request("Z", synthetic_tokens("Z", 14), ID)   # every unpinned block
    assert rt.arbitrate("Z") == "admitted"
    rt.new_request("Y", synthetic_tokens("Y", 1), ID)
    assert rt.arbitrate("Y") == "deferred"
    assert rt.requests["Y"].status == RS.DEFERRED and rt.requests["Y"].named == ("cA",)
    assert victims(rt, "A") == [] and rt.claims["cA"].status == CS.MATERIALIZED
    assert reconstruct(rt.telemetry.events).findings == []


def test_a_request_computing_a_claimed_object_materializes_its_claim():
    """An accepted claim whose object a request computes materializes then (object_stored
    first, so the trace alone shows the positions), and its blocks are pinned at once."""
    rt = MicroRuntime(21, "hard_refuse")
    toks = synthetic_tokens("A", 6)
    rt.register_object("A", toks, ID)
    assert rt.submit_claim(claim("cA", "tenant-a", "A", 6, 6, Mode.HARD_PROTECTED)).accepted
    assert rt.claims["cA"].status == CS.ACCEPTED
    rt.new_request("R", toks, ID)
    assert rt.arbitrate("R") == "admitted"
    assert rt.claims["cA"].status == CS.MATERIALIZED
    ts = [e["type"] for e in rt.telemetry.events]
    assert ts.index("object_stored") < ts.index("claim_materialized")
    rt.finish("R")
    assert rt.protected_resident() == 6 and rt.ledger.protected_resident == 6
    assert reconstruct(rt.telemetry.events).findings == []
