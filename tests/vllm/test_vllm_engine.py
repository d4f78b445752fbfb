"""The whole in-process vLLM engine over the tiny Llama (refinement/vllm_engine.py).

One engine (pool 81, block size 16) serves the whole module; the tests run in order.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def after_scenario(engine, scenario):
    materialized, admitted, snap = scenario.run(engine)
    return engine, materialized, admitted, snap


def test_engine_pool_is_the_requested_size(after_scenario):
    engine, materialized, _, _ = after_scenario
    assert engine.block_pool.num_gpu_blocks == 81
    assert engine.scheduler.kv_cache_manager.block_pool is engine.block_pool
    assert materialized.objects["A"].resident_positions == tuple(range(60))


def test_engine_60_70_81_loses_50_from_the_tail(after_scenario, scenario):
    _, materialized, admitted, snap = after_scenario
    want = scenario.expected(81)
    assert materialized.free_queue == want["queue_after_materialize"]
    assert admitted.admitted and admitted.block_ids == want["active_blocks"]
    assert admitted.num_cached_tokens == 0
    obj = snap.objects["A"]
    assert obj.resident_positions == tuple(range(10))
    assert len(obj.lost_positions) == 50
    assert snap.removed_positions("A") == list(range(59, 9, -1))


def test_engine_rerequest_num_cached_tokens_matches_survival(after_scenario):
    engine, _, _, snap = after_scenario
    engine.finish("B")
    leading = snap.objects["A"].leading_resident
    assert engine.rerequest_cached_tokens("A") == leading * engine.block_size == 160


def test_engine_exact_prefix_recomputes_its_last_token(engine):
    engine.materialize("E", 20)
    assert engine.rerequest_cached_tokens("E") == 19 * 16
    assert engine.rerequest_cached_tokens("E", extra_blocks=1) == 20 * 16
