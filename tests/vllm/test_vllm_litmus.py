"""The litmus suite (checker/litmus/) on the vLLM targets through `kvclaims litmus`'s runner,
and `kvclaims refine --target` on a trace file: stock vLLM for the native policy, the
patched vLLM (core and live engine) for the conformant policies."""
from __future__ import annotations

import json

import pytest


@pytest.mark.parametrize("target,policies", [
    ("vllm-core", ["native"]),
    ("vllm-engine", ["native"]),
    ("vllm-patched", ["hard_refuse", "hard_demote"]),
    ("vllm-patched-engine", ["hard_refuse", "hard_demote"]),
])
def test_litmus_suite_on_vllm(vllm_layer, target, policies):
    from kvclaims.checker.litmus import load_suite, run_suite

    results = run_suite(load_suite(), target, policies)
    assert results, "no litmus case applies"
    bad = [r.to_json() for r in results if not r.passed]
    assert bad == []
    if target.startswith("vllm-patched"):
        assert {r.litmus for r in results} >= {"L3", "L4", "L5", "L7"}


def test_refine_cli_on_vllm_core(vllm_layer, tmp_path, capsys):
    from kvclaims.cli import main

    trace = {"policy": "native",
             "config": {"usable": 80, "cap": 60,
                        "claims": [{"footprint": 60, "pred_start": 0, "pred_len": 60,
                                    "mode": 0, "owner": 0, "identity": 0}],
                        "requests": [{"need": 70}]},
             "steps": [{"action": "materialize", "slots": [0]},
                       {"action": "submit", "slots": [0]}, {"action": "accept", "slots": [0]},
                       {"action": "admit", "slots": [0]}]}
    path = tmp_path / "l3-native.json"
    path.write_text(json.dumps(trace))
    assert main(["refine", "--target", "vllm-core", str(path)]) == 0
    out = capsys.readouterr().out
    assert "refines" in out and "breaks O3, O5, O6 at step 4" in out
    # the same trace under hard_refuse: stock vLLM evicts the claim, the spec forbids it
    trace["policy"] = "hard_refuse"
    path.write_text(json.dumps(trace))
    assert main(["refine", "--target", "vllm-core", str(path)]) == 12
    assert "divergence" in capsys.readouterr().out
    assert main(["refine", "--target", "vllm-patched", str(path)]) == 0


def test_sweep_on_the_patched_engine_is_the_specs(vllm_layer):
    """`kvclaims sweep --target vllm-patched-engine` (scaled: a 6-block hard claim, a 7-block
    request, usable 8..16; one engine per pool size; at 7 the engine rejects the
    7-block prompt as longer than its model length) gives the spec's rows, every decision
    the scheduler's own: refused while 6 + 7 > usable under both policies (the claim is
    hard_protected: hard_demote relaxes only demotable claims, O13), served with the claim
    preserved from 13 on; a demotable claim is demoted then the request served."""
    from kvclaims.checker.cli_litmus import sweep_rows

    sizes, pols = [8, 10, 12, 13, 16], ["hard_refuse", "hard_demote"]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "target"} for r in rows]
    engine = sweep_rows(6, 7, sizes, pols, "vllm-patched-engine")
    assert strip(engine) == strip(sweep_rows(6, 7, sizes, pols, "spec"))
    assert [(r["usable"], r["policy"], r["outcome"]) for r in engine] == [
        (u, p, "serve_preserve" if u >= 13 else "refused") for u in sizes for p in pols]
    assert all(r["broken_obligations"] == [] and r["claims_harmed"] == 0 for r in engine)
    from kvclaims.spec.vocab import Mode
    dem = sweep_rows(6, 7, [8, 13], ["hard_demote"], "vllm-patched-engine", Mode.DEMOTABLE)
    assert strip(dem) == strip(sweep_rows(6, 7, [8, 13], ["hard_demote"], "spec",
                                          Mode.DEMOTABLE))
    assert [r["outcome"] for r in dem] == ["demote_then_serve", "serve_preserve"]
