"""`kvclaims validate` on the telemetry of the litmus runs on the vLLM targets (issue 11):
stock vLLM for the native policy, the patched vLLM (core and live engine) for the conformant
policies, as in test_vllm_litmus.py.  Each trace must validate as a behaviour of the policy the
run used, with exactly the obligations the litmus suite says the run breaks (O7 aside)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@pytest.mark.parametrize("target,policies", [
    ("vllm-core", ["native"]),
    ("vllm-engine", ["native"]),
    ("vllm-patched", ["hard_refuse", "hard_demote"]),
    pytest.param("vllm-patched-engine", ["hard_refuse", "hard_demote"],
                 marks=pytest.mark.xfail(strict=True, reason="the engine's telemetry carries "
                 "the helper requests that play the spec's materialize; kvclaims validate "
                 "does not yet drop them as the target's abstraction does (open)")),
])
def test_vllm_litmus_telemetry_validates(vllm_layer, tmp_path, target, policies):
    from kvclaims.checker.validate import validate
    from trace_runs import litmus_runs, write

    runs = litmus_runs((target,), policies)
    assert runs
    bad = []
    for run in runs:
        rep = validate(str(write(run, tmp_path)))
        got = [v.obligation for v in rep.obligations if v.verdict == "violated"]
        want = [o for o in run.broken if o != "O7"]
        if run.policy not in rep.consistent_with or got != want:
            bad.append((run.name, rep.consistent_with, got, want, rep.policies))
    assert bad == []
