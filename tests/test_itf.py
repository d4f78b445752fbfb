"""ITF traces: encoding, round trip, generated replay tests, malformed files."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from kvclaims.checker.explore import explore
from kvclaims.checker.itf import (ItfError, dec_int, enc_int, read_itf, trace_to_itf)
from kvclaims.checker.traces import save_counterexample
from kvclaims.spec.policy import MUTATIONS, POLICIES
from kvclaims.spec.state import ClaimConfig, Config, RequestConfig

ONE = Config(usable=4, cap=3, claims=(ClaimConfig(3, 0, 2, 0, 0, 0),),
             requests=(RequestConfig(3),))


def test_bigint_encoding():
    assert enc_int(5) == 5
    assert enc_int(2 ** 60) == {"#bigint": str(2 ** 60)}
    assert dec_int({"#bigint": "-9007199254740993"}, "x") == -9007199254740993
    with pytest.raises(ItfError):
        dec_int(True, "x")


def test_itf_shape_and_labels():
    tr = explore(ONE, POLICIES["native"], max_clock=2).traces["O3"]
    d = trace_to_itf(tr)
    assert d["#meta"]["format"] == "ITF" and d["#meta"]["goal"] == "O3"
    assert d["vars"][:7] == ["clock", "seq", "empty", "cached", "cross_identity_reuse",
                             "claims", "requests"]
    assert [s["mbt::actionTaken"] for s in d["states"]] == [
        "init", "submit", "accept", "materialize", "admit"]
    picks = d["states"][4]["mbt::nondetPicks"]
    assert picks["request"] == [0] and picks["claim"] == []
    assert picks["take_0"] == [2]
    # the same identifier keys in every state, the initial one included
    assert all(set(s["mbt::nondetPicks"]) == set(picks) for s in d["states"])
    assert all(k.isidentifier() for k in picks)
    assert d["states"][4]["claims"][0]["status"] == "MATERIALIZED"
    assert d["states"][4]["requests"][0]["named"] == {"#set": []}


@pytest.mark.parametrize("policy", list(POLICIES) + list(MUTATIONS))
def test_round_trip_every_counterexample(policy, tmp_path):
    pol = POLICIES.get(policy) or MUTATIONS[policy]
    for ob, tr in explore(ONE, pol, max_clock=2).traces.items():
        back = read_itf(save_counterexample(tr, tmp_path))
        assert (back.policy, back.goal, back.config) == (tr.policy, tr.goal, tr.config)
        assert back.steps == tr.steps and back.states == tr.states


def test_generated_replay_tests_pass(tmp_path):
    for pol in (POLICIES["native"], POLICIES["misattribute"], MUTATIONS["skip_owner_check"]):
        for tr in explore(ONE, pol, max_clock=2).traces.values():
            save_counterexample(tr, tmp_path)
    files = sorted(tmp_path.rglob("test_replay_*.py"))
    assert len(files) == 6
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:]
    assert "6 passed" in r.stdout


def test_replay_test_fails_on_a_tampered_trace(tmp_path):
    tr = explore(ONE, POLICIES["native"], max_clock=2).traces["O3"]
    p = save_counterexample(tr, tmp_path)
    d = json.loads(open(p).read())
    d["states"][4]["claims"][0]["hi"] = 3
    open(p, "w").write(json.dumps(d))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 1 and "differs from the trace" in r.stdout


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d.pop("states"), "not an ITF trace"),
    (lambda d: d["states"][1].update({"mbt::actionTaken": "teleport"}), "unknown action"),
    (lambda d: d["states"][0].update({"empty": "four"}), "expected an integer"),
    (lambda d: d["states"][0]["claims"][0].update({"status": "HAPPY"}), "expected one of"),
    (lambda d: d["#meta"]["config"]["claims"][0].update({"footprint": 9}), "more than the usable"),
])
def test_malformed_itf_is_one_clear_error(tmp_path, mutate, message):
    tr = explore(ONE, POLICIES["native"], max_clock=2).traces["O3"]
    d = trace_to_itf(tr)
    mutate(d)
    p = tmp_path / "bad.itf.json"
    p.write_text(json.dumps(d))
    with pytest.raises(ItfError, match=message):
        read_itf(p)
