"""The MicroRuntime's pool, claims API and bad input (issue 4, items 1, 2, 3, 8)."""
from __future__ import annotations

import pytest

from kvclaims.model.attention import Attention, live_blocks_required
from kvclaims.model.claims import CacheIdentity, ClaimError, ClaimSpec, Predicate
from kvclaims.model.pool import NULL_BLOCK, BlockPool
from kvclaims.model.runtime import MicroRuntime, block_hashes, synthetic_tokens
from kvclaims.spec.vocab import ClaimStatus as CS, Mode

ID = CacheIdentity(model_id="m", salt_namespace="s")


def rt_with(policy="hard_refuse", blocks=11, cap=None):
    return MicroRuntime(blocks, policy, protected_cap_blocks=cap)


def spec(cid="c", owner="t", obj="A", k=4, footprint=4, mode=Mode.HARD_PROTECTED,
         duration=None, start=0, identity=ID):
    return ClaimSpec(cid, owner, identity, obj, Predicate(start, k), footprint, mode, duration)


# --- pool ----------------------------------------------------------------------------------------

def test_null_block_is_reserved():
    p = BlockPool(80)
    assert p.usable == 79 and p.free_count[0] == 79 and p.ref[NULL_BLOCK] == 1
    got = [p.pop(0) for _ in range(79)]
    assert sorted(got) == list(range(1, 80))


def test_freed_request_goes_tail_first_and_unhashed_to_the_front():
    rt = rt_with(blocks=9)
    rt.new_request("x", synthetic_tokens("x", 3))
    rt.new_request("y", synthetic_tokens("y", 2), admit_future_reuse=False)
    rt.admit("x")
    rt.admit("y")
    xb, yb = list(rt.requests["x"].blocks), list(rt.requests["y"].blocks)
    rt.finish("x")
    rt.finish("y")
    q = rt.pool.queue(0)
    assert q[:2] == list(reversed(yb))            # unhashed, at the front
    assert q[-3:] == list(reversed(xb))           # hashed, at the back, deepest first
    assert rt.pool.unhashed_free == 5


def test_cache_hit_adopts_free_cached_blocks():
    rt = rt_with(blocks=11)
    toks = synthetic_tokens("p", 3)
    rt.new_request("a", toks)
    rt.admit("a")
    cached = list(rt.requests["a"].blocks)
    rt.finish("a")
    rt.new_request("b", toks + synthetic_tokens("q", 2))
    r = rt.admit("b")
    assert r.taken and rt.requests["b"].blocks[:3] == cached
    assert all(rt.pool.tier[b] == -1 and rt.pool.ref[b] == 1 for b in cached)
    assert len(rt.requests["b"].blocks) == 5


def test_block_hash_chains_through_every_earlier_token():
    a = synthetic_tokens("a", 2)
    b = synthetic_tokens("b", 1) + a[16:]          # same second block, other first block
    assert block_hashes(a, ID, 16)[1] != block_hashes(b, ID, 16)[1]
    assert block_hashes(a, ID, 16) == block_hashes(list(a), ID, 16)
    other = CacheIdentity(model_id="m", salt_namespace="other")
    assert block_hashes(a, ID, 16)[0] != block_hashes(a, other, 16)[0]


def test_reuse_never_crosses_cache_identities():
    rt = rt_with()
    rt.register_object("A", synthetic_tokens("A", 4), ID)
    rt.materialize("A")
    rt.new_request("same", synthetic_tokens("r", 1), ID)
    rt.new_request("salted", synthetic_tokens("r", 1),
                   CacheIdentity(model_id="m", salt_namespace="tenant-b"))
    rt.new_request("model", synthetic_tokens("r", 1), CacheIdentity(model_id="m2",
                                                                     salt_namespace="s"))
    assert (rt.reuse("same", "A"), rt.reuse("salted", "A"), rt.reuse("model", "A")) == (4, 0, 0)


@pytest.mark.parametrize("attention,chunk,window,peak", [
    (Attention.FULL, 3, None, 10),
    (Attention.SLIDING_WINDOW, 3, 4, 4),
    (Attention.RECOMPUTE, 3, None, 3),
])
def test_chunked_prefill_live_kv_depends_on_attention(attention, chunk, window, peak):
    assert live_blocks_required(10, attention, chunk, window) == peak
    rt = rt_with(blocks=21)
    rt.new_request("r", synthetic_tokens("r", 10), attention=attention, chunk_blocks=chunk,
                   window_blocks=window)
    assert rt.admit("r").taken
    assert rt.requests["r"].peak_live == peak and len(rt.requests["r"].blocks) <= peak


def test_no_admit_does_not_bound_live_kv():
    assert live_blocks_required(70) == 70
    rt = rt_with(blocks=81)
    rt.new_request("r", synthetic_tokens("r", 70), admit_future_reuse=False)
    assert rt.admit("r").taken and len(rt.requests["r"].blocks) == 70


def test_protected_blocks_are_out_of_the_free_queue():
    rt = rt_with(blocks=11)
    rt.register_object("A", synthetic_tokens("A", 4), ID)
    rt.materialize("A")
    rt.submit_claim(spec())
    blocks = {rt.pool.cache[h] for h in rt.objects["A"].hashes}
    assert all(rt.pool.tier[b] == -1 and rt.pool.ref[b] == 1 for b in blocks)
    assert not blocks & {b for t in range(3) for b in rt.pool.queue(t)}
    assert rt.pool.free_count == [6, 0, 0]


# --- claims API ----------------------------------------------------------------------------------

def test_acceptance_control_and_reasons():
    rt = rt_with(blocks=11, cap=6)
    for o in "ABC":
        rt.register_object(o, synthetic_tokens(o, 4), ID)
    assert rt.submit_claim(spec("c1", obj="A")).accepted
    d2 = rt.submit_claim(spec("c2", obj="B"))
    assert (d2.accepted, d2.reason) == (False, "protected footprint would be 8 > cap 6")
    d3 = rt.submit_claim(spec("c1", obj="C"))
    assert (d3.accepted, d3.reason) == (False, "duplicate claim_id")
    assert rt.claims["c1"].status == CS.ACCEPTED and rt.claims["c1"].spec.object_id == "A"
    d4 = rt.submit_claim(spec("c4", obj="C", mode=Mode.OFFLOADABLE))
    assert (d4.accepted, d4.reason) == (False, "protection mode offloadable has no tier here")
    d5 = rt.submit_claim(spec("c5", obj="C", mode=Mode.SOFT_PRIORITY))
    assert d5.accepted                                     # soft claims do not count
    d6 = rt.submit_claim(spec("c6", obj="B", footprint=8, k=4))
    assert (d6.accepted, d6.reason) == (False, "footprint 8 exceeds the protected cap 6")


def test_only_the_owner_releases():
    rt = rt_with()
    rt.register_object("A", synthetic_tokens("A", 4), ID)
    rt.materialize("A")
    rt.submit_claim(spec(owner="alice"))
    assert rt.release_claim("c", "mallory")
    assert rt.claims["c"].status == CS.MATERIALIZED
    assert rt.telemetry.events[-1]["type"] == "release_denied"
    assert rt.release_claim("c", "alice") and rt.claims["c"].status == CS.RELEASED
    blocks = [rt.pool.cache[h] for h in rt.objects["A"].hashes]
    assert rt.pool.queue(0)[-4:] == list(reversed(blocks))     # back in LRU, tail first


def test_expiring_claim_expires_on_tick_with_an_event():
    rt = rt_with()
    rt.register_object("A", synthetic_tokens("A", 4), ID)
    rt.submit_claim(spec(mode=Mode.EXPIRING, duration=2))
    assert rt.tick() == [] and rt.tick() == ["c"]
    assert rt.claims["c"].status == CS.EXPIRED


@pytest.mark.parametrize("kw,message", [
    ({"cid": ""}, "claim_id must be a non-empty string"),
    ({"owner": ""}, "claim c: owner_scope must be a non-empty string"),
    ({"footprint": 0}, "claim c: footprint_blocks must be > 0"),
    ({"duration": 0}, "claim c: duration must be > 0 when given"),
    ({"k": 5}, "claim c: predicate needs 5 blocks but the object has 4"),
    ({"start": 2, "k": 3}, "claim c: predicate needs 5 blocks but the object has 4"),
    ({"mode": "super_hard"}, "unknown protection mode 'super_hard' (choose from "
     "hard_protected, soft_priority, demotable, offloadable, expiring, best_effort)"),
    ({"mode": Mode.EXPIRING}, "claim c: an expiring claim needs a duration"),
    ({"identity": CacheIdentity(model_id="")}, "claim c: cache_identity.model_id is required"),
])
def test_invalid_claims_are_rejected_at_submission(kw, message):
    rt = rt_with()
    rt.register_object("A", synthetic_tokens("A", 4), ID)
    with pytest.raises(ClaimError) as e:
        rt.submit_claim(spec(**kw))
    assert str(e.value) == message
    assert rt.claims == {} and rt.telemetry.events == []


def test_predicate_longer_than_the_registered_object():
    rt = rt_with()
    rt.register_object("A", synthetic_tokens("A", 3), ID)
    with pytest.raises(ClaimError, match="predicate needs 4 blocks but the object has 3"):
        rt.submit_claim(spec(footprint=4, k=4))


def test_free_queue_after_a_finished_request_is_vllms():
    """VLLM-FACTS.md: after A (60 blocks) finishes in an 80-block pool, the queue is the
    never-used blocks 61..79 in id order, then A's blocks 60..1 (positions 59..0)."""
    rt = rt_with(blocks=80)
    rt.new_request("A", synthetic_tokens("A", 60))
    rt.admit("A")
    assert rt.requests["A"].blocks == list(range(1, 61))
    rt.finish("A")
    assert rt.pool.queue(0) == list(range(61, 80)) + list(range(60, 0, -1))


@pytest.mark.parametrize("num_blocks", [80, 81, 100, 131, 140])
def test_stock_eviction_loses_exactly_the_shortfall_from_the_tail(num_blocks):
    """Measured on vLLM 0.32: over pool sizes, A loses max(0, 130 - usable) blocks, tail first
    (at 80 blocks: 19 never-used blocks taken, 51 of A's evicted, 9 leading survive)."""
    rt = rt_with("native", blocks=num_blocks)
    rt.register_object("A", synthetic_tokens("A", 60), ID)
    rt.new_request("B", synthetic_tokens("B", 70), ID)
    rt.materialize("A")
    r = rt.admit("B")
    lost = max(0, 130 - (num_blocks - 1))
    assert r.taken and [v.position for v in r.victims] == list(range(59, 59 - lost, -1))
    assert rt.objects["A"].interval() == ((0, 60 - lost) if lost < 60 else (0, 0))


def test_an_unknown_policy_is_refused_with_its_name():
    import pytest
    from kvclaims.model.runtime import RuntimeUsageError
    with pytest.raises(RuntimeUsageError, match=r"^unknown claim policy 'bogus' \(choose from "
                                                 r"native, "):
        MicroRuntime(81, "bogus")
