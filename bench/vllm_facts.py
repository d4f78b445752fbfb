"""Measure the vLLM facts that refinement/VLLM-FACTS.md states, on the real vLLM.

Usage: python bench/vllm_facts.py [--engine] [--out FILE]

Prints (or writes) JSON: the 60/70 scenario at pool 81 and 80 on the core driver (and
the Scheduler driver, and with --engine the whole engine), the order in which the
object's blocks were evicted, the sweep of lost blocks over pool sizes 70..140 (usable
= pool - 1), and the free-queue order after a request that hit cached blocks finishes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def scenario(driver, object_blocks: int = 60, active_blocks: int = 70) -> dict:
    driver.materialize("A", object_blocks)
    after_materialize = driver.observe()
    admitted = driver.admit("B", active_blocks)
    snap = driver.observe()
    obj = snap.objects["A"]
    return {
        "pool_blocks": driver.num_blocks,
        "usable_blocks": driver.usable_blocks,
        "free_queue_after_materialize": list(after_materialize.free_queue),
        "active_admitted": admitted.admitted,
        "active_block_ids": list(admitted.block_ids),
        "surviving_positions": list(obj.resident_positions),
        "leading_survived": obj.leading_resident,
        "lost_positions": list(obj.lost_positions),
        "removed_event_positions": snap.removed_positions("A"),
    }


def sweep(core_cls, sizes) -> list[dict]:
    rows = []
    for pool in sizes:
        row = scenario(core_cls(pool))
        rows.append({"pool_blocks": pool, "usable_blocks": pool - 1,
                     "active_admitted": row["active_admitted"],
                     "lost": len(row["lost_positions"]),
                     "leading_survived": row["leading_survived"],
                     "tail_first": row["removed_event_positions"]
                     == sorted(row["lost_positions"], reverse=True)})
    return rows


def hit_then_finish(core_cls, pool: int = 81) -> dict:
    """Object A (60) cached, B (70) evicts its tail, then C re-reads A's prefix."""
    driver = core_cls(pool)
    driver.materialize("A", 60)
    driver.admit("B", 70)
    driver.finish("B")
    before = driver.observe()
    hit = driver.admit("C", 20, prefix_object="A")
    during = driver.observe()
    driver.finish("C")
    after = driver.observe()
    return {
        "free_queue_before_C": list(before.free_queue),
        "C_block_ids": list(hit.block_ids),
        "C_hit_blocks": hit.hit_blocks,
        "A_block_ids_during_C": list(during.objects["A"].block_ids),
        "free_queue_after_C_finishes": list(after.free_queue),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--engine", action="store_true", help="also run the whole engine")
    parser.add_argument("--out", help="write the JSON here instead of stdout")
    args = parser.parse_args(argv)

    start = time.monotonic()
    from kvclaims.refinement import vllm_adapter
    from kvclaims.refinement.vllm_core import VllmCore
    from kvclaims.refinement.vllm_sched import VllmScheduler

    facts = {"vllm_version": vllm_adapter.VLLM_VERSION}
    facts["core"] = {str(p): scenario(VllmCore(p)) for p in (81, 80)}
    facts["scheduler"] = {str(p): scenario(VllmScheduler(p)) for p in (81, 80)}
    facts["sweep_core"] = sweep(VllmCore, range(70, 141))
    facts["hit_then_finish_core"] = hit_then_finish(VllmCore)
    facts["hit_then_finish_scheduler"] = hit_then_finish(VllmScheduler)
    if args.engine:
        from kvclaims.refinement.vllm_engine import VllmEngine

        engine = VllmEngine(81)
        facts["engine"] = {"81": scenario(engine)}
        engine.finish("B")
        facts["engine"]["rerequest_cached_tokens"] = engine.rerequest_cached_tokens("A")
    facts["seconds"] = round(time.monotonic() - start, 1)
    text = json.dumps(facts, indent=1)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")
    else:
        sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
