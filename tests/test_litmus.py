"""The litmus suite on the spec, the sweep, and bad input for explore/litmus/sweep."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from kvclaims.spec.vocab import Mode

from kvclaims.checker.cli_litmus import sweep_rows
from kvclaims.checker.litmus import LITMUS_DIR, load_suite, run_suite
from kvclaims.cli import main

IDS = ["C1", "H1", "L1", "L2", "L3", "L4", "L5", "L6", "L7", "M1", "P1", "R1", "W1"]


def test_suite_has_every_litmus_at_full_and_scaled_size():
    suite = load_suite()
    assert [s.id for s in suite] == IDS
    for s in suite:
        assert {"full", "scaled"} <= set(s.expect)
        full = s.variants["full"]
        assert full.usable == 80 and full.claims[0].footprint == 60


@pytest.mark.parametrize("target", ["spec", "model"])
def test_every_litmus_passes(target):
    res = run_suite(load_suite(), target)
    assert len(res) == 62
    assert [(r.litmus, r.variant, r.policy) for r in res if not r.passed] == []


# issue 15's cases are not vacuous: on the same steps, the seeded mutation of the obligation
# each case is about breaks exactly that obligation (spec target; the runtimes implement the
# conformant policies, not the mutations)
@pytest.mark.parametrize("case,variant,mutation,observed", [
    ("H1", "scaled", "accept_over_cap",
     {"claim_statuses": ["MATERIALIZED", "ACCEPTED"], "broken_obligations": ["O11"]}),
    ("M1", "scaled", "demote_hard_claim",
     {"claim_status": "DEMOTED", "served": True, "broken_obligations": ["O13"]}),
    ("P1", "scaled", "defer_forever",
     {"claim_status": "EXPIRED", "served": True, "broken_obligations": ["O14"]}),
    ("R1", "scaled", "defer_when_fits",
     {"served": True, "arbiter_actions": ["defer"], "broken_obligations": ["O15"]}),
    ("R1", "scaled_wait", "refuse_when_waiting",
     {"request_status": "refused", "broken_obligations": ["O15"]}),
])
def test_issue15_cases_catch_their_mutation(case, variant, mutation, observed):
    from kvclaims.checker.litmus import run_case
    sc = [s for s in load_suite() if s.id == case][0]
    sc.expect[variant][mutation] = observed
    r = run_case(sc, variant, mutation, "spec")
    assert r.mismatches == []


def test_l3_observation_at_full_size():
    r = [x for x in run_suite(load_suite(), "spec", ["hard_refuse"], ["full"])
         if x.litmus == "L3"][0]
    assert r.observed == {"served": False, "request_status": "refused",
                          "arbiter_actions": ["defer", "refuse"], "resident_victims": 0,
                          "blocking_claim_ids": [0], "feasibility": "infeasible",
                          "capacity_shortfall_blocks": 50, "claim_status": "MATERIALIZED",
                          "broken_obligations": []}


def test_litmus_cli_json(tmp_path, capsys):
    out = tmp_path / "litmus.json"
    assert main(["litmus", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert len(rows) == 62 and all(r["passed"] for r in rows)
    assert {"litmus", "policy", "target", "passed", "observed"} <= set(rows[0])
    assert "62/62 litmus cases pass on target spec" in capsys.readouterr().out


def test_sweep_rows():
    rows = {(r["usable"], r["policy"]): r for r in
            sweep_rows(60, 70, [80, 130], ["native", "hard_refuse", "hard_demote",
                                            "write_no_admit"])}
    assert rows[(80, "native")]["resident_blocks_lost"] == 50
    assert rows[(80, "native")]["outcome"] == "evict_resident"
    assert rows[(80, "hard_refuse")]["outcome"] == "refused"
    assert rows[(80, "hard_refuse")]["resident_preserved"] is True
    # issue 15: a hard_protected claim is never demoted; hard_demote refuses behind it, and
    # demotes only a demotable one
    assert rows[(80, "hard_demote")]["outcome"] == "refused"
    demotable = sweep_rows(60, 70, [80], ["hard_demote"], mode=Mode.DEMOTABLE)
    assert demotable[0]["outcome"] == "demote_then_serve"
    # a size that cannot hold the claim is skipped with a note; below the default headroom's
    # cap the claim is rejected, not protected
    notes = []
    rows2 = sweep_rows(60, 70, [50, 70], ["native"], notes=notes)
    assert [r["usable"] for r in rows2] == [70] and "usable 50: skipped" in notes[0]
    assert rows2[0]["outcome"] == "claim_rejected_serve"
    # native waits (no conflict event, no refusal) when the request cannot fit at all
    assert sweep_rows(60, 70, [60], ["native"], headroom=0)[0]["outcome"] == "deferred"
    assert rows[(80, "write_no_admit")]["outcome"] == "serve_no_admit"
    assert rows[(80, "write_no_admit")]["claims_harmed"] == 1
    assert all(rows[(130, p)]["outcome"] == "serve_preserve" for p in
               ("native", "hard_refuse", "hard_demote", "write_no_admit"))


def test_sweep_plot(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "sweep.png"
    assert main(["sweep", "--step", "40", "--plot", str(png), "--json",
                 str(tmp_path / "s.json")]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert len(json.loads((tmp_path / "s.json").read_text())) == 3 * 8


def _run(args, cwd):
    return subprocess.run([sys.executable, "-m", "kvclaims.cli", *args], cwd=cwd,
                          capture_output=True, text=True)


def _bad_scenario(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


L1 = (LITMUS_DIR / "L1.toml").read_text()


@pytest.mark.parametrize("args,message", [
    (["litmus", "SCEN_ACTION"], "unknown action 'teleport'"),
    (["litmus", "SCEN_POLICY"], "unknown policy 'nonesuch'"),
    (["litmus", "--json", "--target", "tpu"], "invalid choice: 'tpu'"),
    (["explore", "--usable", "2", "--claim", "3", "--request", "1", "--no-traces"],
     "more than the usable pool of 2"),
    (["explore", "--usable", "-4"], "-4 is out of range 0..1000000"),
    (["explore", "--usable", "0"], "usable pool must be at least 1 block"),
    (["explore", "--usable", "4", "--request", "-1"], "-1 is out of range 0..1000000"),
    (["explore", "--usable", "4", "--request", "0"], "live blocks needed must be > 0"),
    (["explore", "--usable", "4", "--policy", "nonesuch"], "unknown policy"),
    (["explore", "--replay", "BADITF"], "missing variable(s) seq"),
    (["explore", "--replay", "NOTJSON"], "not JSON"),
    # issue 15: a size that cannot hold the claim is skipped with a note, not an error
    (["sweep", "--sizes", "80,x", "--json"], "expected comma-separated integers"),
])
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, args, message):
    subs = {"SCEN_ACTION": _bad_scenario(tmp_path, "a.toml",
                                         L1.replace('"materialize"', '"teleport"')),
            "SCEN_POLICY": _bad_scenario(tmp_path, "p.toml", L1.replace("expect.full.native",
                                                              "expect.full.nonesuch")),
            "BADITF": str(tmp_path / "bad.itf.json"), "NOTJSON": str(tmp_path / "x.json")}
    (tmp_path / "bad.itf.json").write_text(json.dumps(
        {"#meta": {"policy": "native", "config": {"usable": 4, "claims": [], "requests": []}},
         "vars": [], "states": [{"clock": "zero"}]}))
    (tmp_path / "x.json").write_text("{not json")
    work = tmp_path / "work"
    work.mkdir()
    r = _run([subs.get(a, a) for a in args], work)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in r.stderr
    assert not (work / "out").exists()


def test_explore_replays_its_own_trace(tmp_path):
    work = tmp_path
    r = _run(["explore", "--usable", "4", "--cap", "3", "--claim", "3:2", "--request", "3",
              "--policy", "native", "--out", "o"], work)
    assert r.returncode == 0 and "violated: O3 (depth 4)" in r.stdout
    r = _run(["explore", "--replay", "o/native/O3/trace.itf.json"], work)
    assert r.returncode == 0 and "violate O3" in r.stdout
