"""Fixtures for the vLLM layer tests.

vLLM is imported once per session (about 7 s) and the engine is built once. These tests
never skip: if vLLM cannot be imported they fail, since CI installs it (`make vllm`).
"""

from __future__ import annotations

import types

import pytest

ENGINE_POOL = 81

OBJECT_BLOCKS = 60
ACTIVE_BLOCKS = 70


def run_scenario(driver):
    """Materialize A (60 blocks), admit B (70 blocks); the snapshot after B."""
    driver.materialize("A", OBJECT_BLOCKS)
    materialized = driver.observe()
    admitted = driver.admit("B", ACTIVE_BLOCKS)
    return materialized, admitted, driver.observe()


def expected(pool: int) -> dict:
    """What vLLM 0.32 does, as measured (refinement/VLLM-FACTS.md section 2)."""
    usable = pool - 1
    lost = max(0, OBJECT_BLOCKS + ACTIVE_BLOCKS - usable)
    never_used = list(range(OBJECT_BLOCKS + 1, pool))
    return {
        "lost": lost,
        "survivors": tuple(range(OBJECT_BLOCKS - lost)),
        "removed_order": list(range(OBJECT_BLOCKS - 1, OBJECT_BLOCKS - 1 - lost, -1)),
        # B takes the never-used blocks, then A's blocks tail first (block = position + 1)
        "active_blocks": tuple(never_used + list(range(OBJECT_BLOCKS, OBJECT_BLOCKS - lost, -1))),
        "queue_after_materialize": tuple(never_used + list(range(OBJECT_BLOCKS, 0, -1))),
    }


def check_scenario(driver, pool: int) -> None:
    want = expected(pool)
    materialized, admitted, snap = run_scenario(driver)
    assert materialized.free_queue == want["queue_after_materialize"]
    assert [e.position for e in materialized.events if e.kind == "stored"] == list(
        range(OBJECT_BLOCKS))
    assert admitted.admitted
    assert admitted.block_ids == want["active_blocks"]
    obj = snap.objects["A"]
    assert len(obj.lost_positions) == want["lost"]
    assert obj.resident_positions == want["survivors"]
    assert obj.leading_resident == len(want["survivors"])
    assert snap.removed_positions("A") == want["removed_order"]
    assert snap.requests == {"B": want["active_blocks"]}
    assert snap.num_free == pool - 1 - ACTIVE_BLOCKS


@pytest.fixture(scope="session")
def vllm_layer():
    """The vLLM adapter module; fails the test when vLLM is not importable."""
    try:
        from kvclaims.refinement.vllm_engine import set_engine_env

        set_engine_env()
        from kvclaims.refinement import vllm_adapter
    except Exception as exc:  # ImportError, or a broken torch/vllm install
        pytest.fail(f"vLLM is required for tests/vllm (run `make vllm`): "
                    f"{type(exc).__name__}: {exc}", pytrace=False)
    return vllm_adapter


@pytest.fixture(scope="session")
def core_cls(vllm_layer):
    from kvclaims.refinement.vllm_core import VllmCore

    return VllmCore


@pytest.fixture(scope="session")
def sched_cls(vllm_layer):
    from kvclaims.refinement.vllm_sched import VllmScheduler

    return VllmScheduler


@pytest.fixture(scope="session")
def engine(vllm_layer):
    """One in-process vllm.LLM over the tiny Llama, pool of 81 blocks of 16."""
    from kvclaims.refinement.vllm_engine import VllmEngine

    return VllmEngine(ENGINE_POOL)


@pytest.fixture(scope="session")
def scenario():
    """The 60/70 scenario helpers (test modules here are not a package: the folder name
    would shadow vLLM)."""
    return types.SimpleNamespace(
        OBJECT_BLOCKS=OBJECT_BLOCKS, ACTIVE_BLOCKS=ACTIVE_BLOCKS, run=run_scenario,
        expected=expected, check=check_scenario)


@pytest.fixture(scope="session")
def patched(vllm_layer):
    """The in-process engine with ClaimScheduler (pool of 81), shared by the process."""
    from kvclaims.refinement.vllm_target import shared_engine

    return shared_engine("patched", ENGINE_POOL)


@pytest.fixture
def fresh(patched):
    """The patched engine with a new arbiter under `policy` (and `conf`, the scheduler's
    additional_config["kvclaims"] entries, restored afterwards), every request a previous
    test left finished (a refinement target parks some) and an emptied prefix cache."""
    sched = patched.scheduler
    before = dict(sched.kvclaims_conf)

    def make(policy="hard_refuse", cap=60, **conf):
        sched.kvclaims_conf = dict(before, **conf)
        arb = sched.kvclaims_reset(policy, cap)
        patched.reset_pool()
        return patched, arb
    yield make
    if sched.kvclaims_conf != before:
        sched.kvclaims_conf = before
        sched.kvclaims_reset("hard_refuse", 60)


def serve_requests(eng, requests, steps=20):
    """Add (request_id, token_ids, SamplingParams[, cache_salt]) requests together, step the
    engine until none is left; the finished outputs by request id."""
    from vllm.inputs import TokensPrompt

    for rid, token_ids, params, *salt in requests:
        prompt = TokensPrompt(prompt_token_ids=list(token_ids))
        if salt and salt[0] is not None:
            prompt["cache_salt"] = salt[0]
        eng.engine.add_request(rid, prompt, params)
    done = {}
    for _ in range(steps):
        for out in eng.engine.step():
            if out.finished:
                done[out.request_id] = out
        if not eng.engine.has_unfinished_requests():
            break
    return done


@pytest.fixture(scope="session")
def serve():
    return serve_requests
