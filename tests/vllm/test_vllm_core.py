"""vLLM's own KVCacheManager/BlockPool driven offline (refinement/vllm_core.py)."""

from __future__ import annotations

import pytest

OBJECT_BLOCKS = 60
ACTIVE_BLOCKS = 70


def test_adapter_knows_the_installed_vllm(vllm_layer):
    assert vllm_layer.version_tuple()[:2] == (0, 32)
    assert vllm_layer.version_tuple("0.33.0rc1+cpu") == (0, 33, 0)


def test_fresh_pool_queue_and_null_block(core_cls):
    core = core_cls(81)
    snap = core.observe()
    assert snap.null_block_id == 0
    assert snap.free_queue == tuple(range(1, 81))
    assert snap.usable_blocks == 80
    assert not snap.blocks[0].in_free_queue and snap.blocks[0].is_null


@pytest.mark.parametrize("pool", [81, 80])
def test_60_70_scenario_block_for_block(core_cls, scenario, pool):
    scenario.check(core_cls(pool), pool)


def test_sweep_70_to_140_loses_deepest_blocks(core_cls):
    for pool in range(70, 141):
        core = core_cls(pool)
        core.materialize("A", OBJECT_BLOCKS)
        result = core.admit("B", ACTIVE_BLOCKS)
        snap = core.observe()
        obj = snap.objects["A"]
        usable = pool - 1
        if usable < ACTIVE_BLOCKS:
            assert not result.admitted and obj.lost_positions == ()
            assert snap.removed_positions("A") == [] and snap.requests == {}
            continue
        lost = max(0, OBJECT_BLOCKS + ACTIVE_BLOCKS - usable)
        assert result.admitted
        assert obj.resident_positions == tuple(range(OBJECT_BLOCKS - lost)), pool
        assert snap.removed_positions("A") == list(range(59, 59 - lost, -1)), pool


def test_live_blocks_are_referenced_and_not_free(core_cls):
    core = core_cls(81)
    core.materialize("A", OBJECT_BLOCKS)
    core.admit("B", ACTIVE_BLOCKS)
    snap = core.observe()
    live = set(snap.requests["B"])
    for block in snap.blocks[1:]:
        assert block.in_free_queue == (block.block_id not in live)
        assert block.ref_cnt == (1 if block.block_id in live else 0)
    assert snap.num_free + len(live) == snap.usable_blocks


def test_finish_returns_blocks_tail_first_to_the_back(core_cls):
    core = core_cls(81)
    core.materialize("A", OBJECT_BLOCKS)
    b_ids = core.admit("B", ACTIVE_BLOCKS).block_ids
    core.observe()
    core.finish("B")
    snap = core.observe()
    # A's survivors (positions 9..0) are older; then B's blocks, deepest first.
    assert snap.free_queue == tuple(range(10, 0, -1)) + tuple(reversed(b_ids))
    assert snap.events == ()


def test_hit_blocks_return_behind_everything_when_the_request_finishes(core_cls):
    core = core_cls(81)
    core.materialize("A", OBJECT_BLOCKS)
    core.admit("B", ACTIVE_BLOCKS)
    core.finish("B")
    hit = core.admit("C", 20, prefix_object="A")
    assert hit.hit_blocks == 10 and hit.num_cached_tokens == 160
    assert hit.block_ids == tuple(range(1, 21))
    during = core.observe()
    assert not any(during.blocks[b].in_free_queue for b in hit.block_ids)
    core.finish("C")
    after = core.observe()
    assert after.free_queue[-20:] == tuple(range(20, 0, -1))
    assert after.objects["A"].resident_positions == tuple(range(20))


def test_no_admit_still_evicts_but_caches_nothing(core_cls):
    core = core_cls(81)
    core.materialize("A", OBJECT_BLOCKS)
    core.observe()
    b = core.admit("B", ACTIVE_BLOCKS, admit_future_reuse=False)
    snap = core.observe()
    assert b.admitted and len(b.block_ids) == ACTIVE_BLOCKS
    assert len(snap.objects["A"].lost_positions) == 50  # O2: no-admit is not live bounding
    assert [e.kind for e in snap.events] == ["removed"] * 50
    core.finish("B")
    after = core.observe()
    assert after.free_queue[:ACTIVE_BLOCKS] == tuple(reversed(b.block_ids))
    assert all(after.blocks[i].block_hash is None for i in b.block_ids)
    again = core.admit("B2", 10, prefix_object=None)
    assert again.hit_blocks == 0


def test_exact_rerequest_recomputes_the_last_block(core_cls):
    core = core_cls(81)
    core.materialize("A", OBJECT_BLOCKS)
    core.observe()
    again = core.materialize("A", OBJECT_BLOCKS)
    assert again.hit_blocks == 59 and again.num_cached_tokens == 944
    snap = core.observe()
    assert [(e.kind, e.position) for e in snap.events] == [("stored", 59)]
    assert sum(1 for b in snap.blocks if b.block_hash is not None) == 61
    core.admit("B", ACTIVE_BLOCKS)
    after = core.observe()
    assert after.removed_positions("A") == [59, 59] + list(range(58, 9, -1))
    assert after.objects["A"].resident_positions == tuple(range(10))


def test_salt_separates_cache_identities(core_cls):
    core = core_cls(81)
    core.materialize("A", 4)
    assert core.materialize("A", 4).hit_blocks == 3
    assert core.materialize("A", 4, salt="tenant-2").hit_blocks == 0
