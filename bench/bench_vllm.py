"""make bench-vllm: one run, ratios, written to bench/vllm.json.

(a) Replay throughput of the refinement checker on target vllm-patched (vLLM's own
    KVCacheManager/BlockPool + the claim arbiter) in spec steps per second, against the raw
    cost of the same vLLM calls (materialize / admit / finish on a bare VllmCore, recorded
    from the checked run) without the harness.
(b) The claim arbiter's overhead on Scheduler.schedule() + update_from_output(): vLLM's stock
    Scheduler against ClaimScheduler (hard_refuse, 64 accepted claims pinning 16-block
    system prompts) at 256 concurrent requests, pool sizes 4,096 and 65,536 blocks. Every
    request starts with one of the claimed prefixes and decodes; finished requests are
    replaced so 256 stay running. Only the two scheduler calls are timed, in thread CPU time
    (the machine is shared), the two schedulers interleaved step by step.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

from kvclaims.refinement.vllm_engine import set_engine_env

set_engine_env()

from kvclaims.refinement import vllm_adapter as va  # noqa: E402
from kvclaims.refinement.check import check_refinement  # noqa: E402
from kvclaims.refinement.vllm_core import fresh_token_ids, object_token_ids  # noqa: E402
from kvclaims.refinement.vllm_target import VllmPatchedTarget, _CoreDriver, salt  # noqa: E402
from kvclaims.spec.actions import Step  # noqa: E402
from kvclaims.spec.policy import POLICIES  # noqa: E402
from kvclaims.spec.state import ClaimConfig, Config, RequestConfig  # noqa: E402
from kvclaims.spec.vocab import Mode  # noqa: E402

OUT = Path(__file__).with_name("vllm.json")


# --- (a) replay throughput -------------------------------------------------------------------

def workload(rng: random.Random):
    usable = rng.randint(8, 80)
    claims = []
    for _ in range(rng.randint(1, 3)):
        f = rng.randint(1, usable)
        mode = rng.choice([Mode.HARD_PROTECTED, Mode.DEMOTABLE, Mode.EXPIRING, Mode.SOFT_PRIORITY])
        claims.append(ClaimConfig(f, 0, rng.randint(1, f), int(mode), rng.randint(0, 1), 0,
                                  rng.randint(1, 3) if mode == Mode.EXPIRING else 0))
    reqs = tuple(RequestConfig(rng.randint(1, usable)) for _ in range(rng.randint(1, 3)))
    cfg = Config(usable, rng.randint(0, usable), tuple(claims), reqs)
    steps = []
    for i in range(len(claims)):
        steps += [Step("materialize", (i,)), Step("submit", (i,)), Step("accept", (i,))]
    for _ in range(20):
        a = rng.choice(["admit", "admit", "finish", "defer", "refuse", "tick", "release",
                        "demote", "materialize"])
        j, i = rng.randrange(len(reqs)), rng.randrange(len(claims))
        if a in ("admit", "finish", "defer", "refuse"):
            steps.append(Step(a, (j,)))
        elif a == "demote":
            steps.append(Step(a, (j, i)))
        elif a == "release":
            steps.append(Step(a, (i,), (("actor", rng.randint(0, 1)),)))
        elif a == "materialize":
            steps.append(Step(a, (i,)))
        else:
            steps.append(Step("tick", ()))
    return cfg, steps


_CALLS: list = []
_pin, _unpin = va.pin_blocks, va.unpin_blocks


def _rec_pin(pool, blocks):
    _CALLS.append(("pin", [b.block_id for b in blocks], {}))
    return _pin(pool, blocks)


def _rec_unpin(pool, blocks):
    _CALLS.append(("unpin", [b.block_id for b in blocks], {}))
    return _unpin(pool, blocks)


class Recorder(VllmPatchedTarget):
    """vllm-patched that also records the vLLM calls it made: the driver's (materialize,
    admit, finish) and the arbiter's pins (touch / free_blocks on the pool)."""

    calls: list

    def _build(self, num_blocks, policy):
        super()._build(num_blocks, policy)
        drv, calls = self.driver, _CALLS
        for name in ("materialize", "admit", "finish"):
            orig = getattr(drv, name)

            def rec(*a, _orig=orig, _name=name, **kw):
                calls.append((_name, a, kw))
                return _orig(*a, **kw)
            setattr(drv, name, rec)


def bench_replay(n_workloads: int, seed: int):
    rng = random.Random(seed)
    jobs = [workload(rng) for _ in range(n_workloads)]
    recorded = []
    steps = declined = 0
    diverged: dict = {}
    t0 = time.perf_counter()
    for cfg, trace in jobs:
        pol = POLICIES["hard_demote" if rng.random() < 0.5 else "hard_refuse"]
        tgt = Recorder()
        _CALLS.clear()
        va.pin_blocks, va.unpin_blocks = _rec_pin, _rec_unpin
        try:
            rep = check_refinement(tgt, cfg, pol, trace)
        finally:
            va.pin_blocks, va.unpin_blocks = _pin, _unpin
        assert not rep.initial_diff, rep.initial_diff
        if rep.divergence is not None:
            # vllm-patched still replays a tick O14 forbids while a deferred request is
            # answerable (open since issue 15, tests/vllm xfail): the run stops there; its
            # steps and vLLM calls so far count on both sides, the divergence is reported
            d = rep.divergence
            assert d.label.startswith("tick"), d.describe()
            diverged[d.label] = diverged.get(d.label, 0) + 1
        steps += len(rep.steps)
        declined += len(rep.declined)
        recorded.append((cfg, list(_CALLS)))
    harness = time.perf_counter() - t0
    # the same vLLM calls, bare: a VllmCore per workload, the recorded calls in order
    t0 = time.perf_counter()
    for cfg, calls in recorded:
        core = _CoreDriver(cfg.usable + 1)
        core.salts = {f"r{j}": salt(rc.identity) for j, rc in enumerate(cfg.requests)}
        pool = core.block_pool
        for name, a, kw in calls:
            if name == "pin":
                pool.touch([pool.blocks[i] for i in a])
            elif name == "unpin":
                pool.free_blocks([pool.blocks[i] for i in a])
            else:
                getattr(core, name)(*a, **kw)
    raw = time.perf_counter() - t0
    return {"workloads": n_workloads, "spec_steps": steps, "declined_steps": declined,
            "stopped_at_divergence": diverged,
            "harness_seconds": round(harness, 3), "raw_vllm_seconds": round(raw, 3),
            "spec_steps_per_second": round(steps / harness, 1),
            "raw_vllm_calls": sum(len(c) for _, c in recorded),
            "harness_over_raw": round(harness / raw, 2)}


def replay_medians(n_workloads: int, seed: int, repeat: int):
    """bench_replay `repeat` times on the same workloads: the last run's counts, the medians
    of the times and of the per-run ratio harness / bare."""
    runs = [bench_replay(n_workloads, seed) for _ in range(repeat)]
    out = dict(runs[-1])
    for k in ("harness_seconds", "raw_vllm_seconds", "spec_steps_per_second",
              "harness_over_raw"):
        out[k] = round(statistics.median(r[k] for r in runs), 3)
    out["repeat"] = repeat
    out["harness_over_raw_runs"] = [r["harness_over_raw"] for r in runs]
    return out


# --- (b) arbiter overhead on the Scheduler ---------------------------------------------------

CONCURRENT, CLAIMS, OBJECT_BLOCKS, FRESH_BLOCKS, DECODE = 256, 64, 16, 2, 48


def scheduler_config(num_blocks: int, claims: bool):
    from vllm.config import (CacheConfig, KVEventsConfig, ModelConfig, SchedulerConfig,
                             VllmConfig)

    from kvclaims.refinement.vllm_model import ensure_tiny_llama

    max_len = 2048
    model = ModelConfig(model=str(ensure_tiny_llama()), skip_tokenizer_init=True,
                        max_model_len=max_len, dtype="float32")
    sched = SchedulerConfig(max_model_len=max_len, is_encoder_decoder=False,
                            max_num_batched_tokens=CONCURRENT * (OBJECT_BLOCKS + FRESH_BLOCKS) * 16,
                            max_num_seqs=CONCURRENT, enable_chunked_prefill=False)
    cache = CacheConfig(block_size=16, enable_prefix_caching=True)
    cache.num_gpu_blocks = num_blocks
    extra = {"kvclaims": {"policy": "hard_refuse", "cap_blocks": num_blocks // 2,
                          "keep_events": False, "identity": "client"}} if claims else {}
    return VllmConfig(model_config=model, cache_config=cache, scheduler_config=sched,
                      kv_events_config=KVEventsConfig(enable_kv_cache_events=False),
                      additional_config=extra)


class Load:
    def __init__(self, num_blocks: int, patched: bool):
        from vllm.v1.core.sched.scheduler import Scheduler
        from vllm.v1.structured_output import StructuredOutputManager

        from kvclaims.refinement.vllm_plugin import ClaimScheduler

        cfg = scheduler_config(num_blocks, patched)
        cls = ClaimScheduler if patched else Scheduler
        self.s = cls(vllm_config=cfg, kv_cache_config=va.make_kv_cache_config(num_blocks, 16),
                     structured_output_manager=StructuredOutputManager(cfg), block_size=16)
        self.patched, self.n, self.timed = patched, 0, []
        self.prefixes = [object_token_ids(f"sys{k}", OBJECT_BLOCKS) for k in range(CLAIMS)]
        for k in range(CLAIMS):   # the carriers: each claims its system prompt
            extra = {"kvclaims_tenant": "t", "kvclaims_claim": {
                "claim_id": f"c{k}", "object_id": f"sys{k}", "protection_mode": "hard_protected",
                "predicate": {"kind": "leading_prefix_at_least", "k": OBJECT_BLOCKS}}} \
                if patched else None
            self.add(self.prefixes[k], 1, extra)
        while self.s.get_num_unfinished_requests():
            self.step(timed=False)

    def add(self, tokens, max_tokens, extra=None):
        self.n += 1
        self.s.add_request(va.make_request(f"q{self.n}", tokens, block_size=16,
                                           max_tokens=max_tokens, extra_args=extra))

    def step(self, timed=True):
        from vllm.v1.outputs import ModelRunnerOutput

        t0 = time.thread_time()
        out = self.s.schedule()
        t1 = time.thread_time()
        ids = list(out.num_scheduled_tokens)
        mro = ModelRunnerOutput(req_ids=ids, req_id_to_index={r: i for i, r in enumerate(ids)},
                                sampled_token_ids=[[7] for _ in ids])
        t2 = time.thread_time()
        self.s.update_from_output(out, mro)
        t3 = time.thread_time()
        if timed:
            self.timed.append((t1 - t0) + (t3 - t2))

    def top_up(self, rng):
        while self.s.get_num_unfinished_requests() < CONCURRENT:
            k = rng.randrange(CLAIMS)
            tokens = self.prefixes[k] + fresh_token_ids(f"u{self.n}", FRESH_BLOCKS)
            self.add(tokens, rng.randint(DECODE // 2, DECODE))


def bench_overhead(num_blocks: int, steps: int, seed: int):
    stock, patched = Load(num_blocks, False), Load(num_blocks, True)
    assert patched.s.arbiter.protected_resident == CLAIMS * OBJECT_BLOCKS
    rs, rp = random.Random(seed), random.Random(seed)
    for n in range(steps + 20):            # interleaved, so drift hits both alike
        stock.top_up(rs)
        patched.top_up(rp)
        stock.step(timed=n >= 20)
        patched.step(timed=n >= 20)
    ms = lambda xs: statistics.median(xs) * 1e3
    a, b = ms(stock.timed), ms(patched.timed)
    arb = patched.s.arbiter
    return {"pool_blocks": num_blocks, "concurrent_requests": CONCURRENT, "claims": CLAIMS,
            "pinned_blocks": arb.protected_resident, "steps_timed": steps,
            "stock_ms_per_step_median": round(a, 4), "arbiter_ms_per_step_median": round(b, 4),
            "stock_ms_per_step_mean": round(statistics.mean(stock.timed) * 1e3, 4),
            "arbiter_ms_per_step_mean": round(statistics.mean(patched.timed) * 1e3, 4),
            "added_time_ratio_median": round(b / a - 1, 4),
            "added_time_ratio_mean": round(statistics.mean(patched.timed)
                                           / statistics.mean(stock.timed) - 1, 4),
            "claims_materialized": arb.counters["materialized"],
            "conflicts": arb.counters["deferred"] + arb.counters["refused"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", type=int, default=300)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=20260601)
    ap.add_argument("--repeat", type=int, default=5,
                    help="replay runs (same workloads); medians are reported")
    ap.add_argument("--out", default=str(OUT))
    a = ap.parse_args(argv)
    res = {"vllm_version": va.VLLM_VERSION, "python": platform.python_version(),
           "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
           "replay": replay_medians(a.workloads, a.seed, a.repeat),
           "scheduler_overhead": [bench_overhead(n, a.steps, a.seed) for n in (4096, 65536)]}
    Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
