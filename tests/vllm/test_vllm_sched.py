"""vLLM's own Scheduler built offline and driven step by step (refinement/vllm_sched.py)."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("pool", [81, 80])
def test_60_70_scenario_matches_the_core(sched_cls, core_cls, scenario, pool):
    sched = sched_cls(pool)
    scenario.check(sched, pool)
    core = core_cls(pool)
    scenario.run(core)
    core_snap, sched_snap = core.observe(), sched.observe()
    assert sched_snap.free_queue == core_snap.free_queue
    assert sched_snap.objects["A"].block_ids == core_snap.objects["A"].block_ids


def test_live_requests_decode_into_a_new_block(sched_cls):
    sched = sched_cls(81)
    b = sched.admit("B", 10)
    assert len(b.block_ids) == 10
    sched.admit("C", 5)  # this step also decodes B: token 161 needs B's 11th block
    snap = sched.observe()
    assert len(snap.requests["B"]) == 11 and len(snap.requests["C"]) == 5


def test_not_admitted_request_is_reported_and_holds_nothing(sched_cls):
    sched = sched_cls(81)
    sched.admit("B", 70)
    refused = sched.admit("C", 20)  # 10 free blocks; B's decode in that step takes one
    assert not refused.admitted
    snap = sched.observe()
    assert set(snap.requests) == {"B"} and len(snap.requests["B"]) == 71
    assert snap.num_free == 9


def test_no_admit_travels_as_extra_args(sched_cls):
    sched = sched_cls(81)
    sched.materialize("A", 60)
    sched.observe()
    b = sched.admit("B", 70, admit_future_reuse=False)
    snap = sched.observe()
    assert len(snap.objects["A"].lost_positions) == 50
    assert [e.kind for e in snap.events] == ["removed"] * 50
    sched.finish("B")
    after = sched.observe()
    assert after.free_queue[:70] == tuple(reversed(b.block_ids))


def test_rerequest_after_eviction_hits_the_survivors(sched_cls, scenario):
    sched = sched_cls(81)
    scenario.run(sched)
    sched.finish("B")
    c = sched.admit("C", 61, prefix_object="A")
    assert c.num_cached_tokens == 160 and c.hit_blocks == 10
