"""With vLLM installed the patched vLLM's evidence is not only re-checked by digest but
re-run: `kvclaims conform --recompute` re-records the litmus cases on vLLM's own
KVCacheManager / Scheduler and requires the anchored results."""
from __future__ import annotations


def test_recompute_reproduces_the_patched_vllm_evidence(vllm_layer):
    from kvclaims.checker.conform.cli import DESCRIPTOR_DIR, run

    rows = {r.mode: r for r in run([DESCRIPTOR_DIR / "vllm-0.32-patched.toml"], recompute=True)}
    assert {m: r.cls for m, r in rows.items()} == {
        "hard_protected": "native_conformance", "demotable": "native_conformance",
        "expiring": "native_conformance", "soft_priority": "approximation_substrate",
        "best_effort": "approximation_substrate", "offloadable": "unknown_evidence"}
