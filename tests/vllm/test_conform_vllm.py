"""With vLLM installed the vLLM descriptors' evidence is not only re-checked by digest but
re-run: `kvclaims conform --recompute` re-records the litmus cases on vLLM's own
KVCacheManager / Scheduler and requires the anchored results."""
from __future__ import annotations


import pytest

NATIVE, APPROX, REJECTED, UNKNOWN = ("native_conformance", "approximation_substrate",
                                     "rejected_mapping", "unknown_evidence")


@pytest.mark.parametrize("descriptor,classes", [
    # O11, O12, O15: no litmus case exercises them, the protected rows fail closed
    ("vllm-0.32-patched.toml", (APPROX, APPROX, APPROX, UNKNOWN, APPROX, APPROX)),
    ("vllm-0.32-stock.toml", (REJECTED, APPROX, REJECTED, UNKNOWN, REJECTED, APPROX)),
])
def test_recompute_reproduces_the_vllm_evidence(vllm_layer, descriptor, classes):
    from kvclaims.checker.conform.cli import DESCRIPTOR_DIR, run

    rows = {r.mode: r for r in run([DESCRIPTOR_DIR / descriptor], recompute=True)}
    modes = ("hard_protected", "soft_priority", "demotable", "offloadable", "expiring",
             "best_effort")
    assert tuple(rows[m].cls for m in modes) == classes
    assert not any(r.startswith("evidence-not") for row in rows.values() for r in row.rules)
