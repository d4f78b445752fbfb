"""The patched engine driven like a server (issue 8): the stall reproduction ends with every
request terminal on the in-process and the multi-process engine, in both conformant policies;
a claim nested past the limits leaves the multi-process engine serving; a short random load
with several tenants ends with every request terminal, no stall and no observer finding on
the engine's own telemetry."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

POLICIES = ("hard_refuse", "hard_demote")
REFUSED_B = ("kvclaims: refused: blocking claims cA (infeasible: protected 60 + 70 > "
             "usable 80)")


def check_stall(policy, done):
    assert set(done) == {"A", "B", "C", "D", "D2", "E"}, done
    assert done["A"]["finish_reason"] == "length"
    assert done["C"]["finish_reason"] == "length"
    # A's claim is hard_protected: refused under both policies (hard_demote relaxes only a
    # demotable claim, O13)
    assert done["B"] == {"finish_reason": "error", "stop_reason": REFUSED_B,
                         "step": done["B"]["step"]}
    assert done["B"]["step"] <= 3 and done["C"]["step"] <= 3
    assert done["D"]["stop_reason"] == ("kvclaims: bad claim: kvclaims_claim is longer than "
                                        "4096 characters")
    assert done["D2"]["stop_reason"] == ("kvclaims: bad claim: kvclaims_claim is nested "
                                         "deeper than 4 levels")
    assert done["E"]["finish_reason"] == "length"


@pytest.mark.parametrize("policy", POLICIES)
def test_stall_reproduction_in_process(fresh, policy):
    from kvclaims.refinement.load import stall_scenario

    eng, arb = fresh(policy, cap=60)
    done = stall_scenario(eng.llm)
    check_stall(policy, done)
    assert arb.counters["refused"] == 1 and arb.counters["demoted"] == 0
    assert arb.counters["bad_input"] == 2


@pytest.mark.parametrize("policy", POLICIES)
def test_stall_reproduction_multi_process(tmp_path, policy):
    out = tmp_path / "stall.json"
    proc = subprocess.run([sys.executable, "-m", "kvclaims.cli", "load", "--scenario", "stall",
                           "--engine", "multi-process", "--policy", policy, "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_stall(policy, json.loads(out.read_text())["requests"])


@pytest.mark.load
@pytest.mark.parametrize("policy", POLICIES)
def test_short_random_load_in_process(fresh, tmp_path, policy):
    from kvclaims.model.telemetry import Telemetry
    from kvclaims.refinement.load import run_load

    eng, arb = fresh(policy, cap=60)
    path = str(tmp_path / "telemetry.jsonl")
    eng.scheduler.kvclaims_reset(policy, 60, Telemetry(path=path, keep=100))
    rep = run_load("in-process", policy, seconds=15, max_requests=600, seed=7,
                   llm=eng.llm, telemetry_path=path)
    assert rep.submitted == 600 or rep.seconds >= 15
    assert rep.unfinished == 0 and rep.terminal == rep.submitted
    assert rep.stalls == 0 and rep.note == ""
    assert rep.observer_findings == 0, rep.observer_kinds
    assert rep.refusals_naming_no_claim == 0
    assert rep.claims_accepted > 0 and rep.bad_claims > 0
