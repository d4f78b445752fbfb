"""`kvclaims check` as a user meets it: exit codes, one-line errors, the JSON report."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kvclaims.checker.manifest import DEFAULT_PATH

KV = [str(Path(sys.executable).with_name("kvclaims")), "check"]


def run(args, cwd):
    return subprocess.run(KV + args, cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("args,needle", [
    (["--policy", "nosuch"], "unknown policy 'nosuch'"),
    (["--obligation", "O99"], "unknown obligation 'O99'"),
    (["--mutation", "nope"], "unknown mutation 'nope'"),
    (["--depth", "-1"], "out of range 0..64"),
    (["--timeout", "zero"], "is not a number"),
    (["--claims", "0"], "out of range 1..8"),
    (["--bogus"], "unrecognized arguments"),
])
def test_bad_usage_is_one_line_exit_2(tmp_path, args, needle):
    r = run(args + ["--out", str(tmp_path / "out")], tmp_path)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and needle in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content", ["{not json", "[]", '{"verdicts": {}}',
                                     '{"verdicts": {"native": {"O3": {"verdict": "maybe"}}},'
                                     ' "mutations": {}, "sometimes": {}}'])
def test_malformed_manifest_is_exit_2(tmp_path, content):
    m = tmp_path / "m.json"
    m.write_text(content)
    out = tmp_path / "out"
    out.mkdir()
    (out / "check-spec.json").write_text("previous report")
    r = run(["--manifest", str(m), "--out", str(out)], tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "manifest" in r.stderr
    assert (out / "check-spec.json").read_text() == "previous report"


def test_small_run_matches_manifest_and_reports(tmp_path):
    r = run(["--policy", "misattribute,hard_refuse", "--obligation", "O8,O3", "--no-sometimes",
             "--out", str(tmp_path / "out")], tmp_path)
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "out" / "check-spec.json").read_text())
    got = {(x["policy"], x["obligation"], x["slots"]): x for x in rep["results"]}
    # the conformant policy is proved for 3+3 and, in the cutoff model, for any number
    assert set(got) == {("misattribute", "O8", "3+3"), ("misattribute", "O3", "3+3"),
                        ("hard_refuse", "O8", "3+3"), ("hard_refuse", "O3", "3+3"),
                        ("hard_refuse", "O8", "any"), ("hard_refuse", "O3", "any")}
    v = got[("misattribute", "O8", "3+3")]
    assert v["verdict"] == "violated" and v["depth"] == 1 and v["parametric"] is False
    assert Path(v["counterexample"]).exists()
    for key in [("misattribute", "O3", "3+3"), ("hard_refuse", "O8", "3+3"),
                ("hard_refuse", "O3", "3+3"), ("hard_refuse", "O8", "any"),
                ("hard_refuse", "O3", "any")]:
        assert got[key]["verdict"] == "proved" and got[key]["parametric"] is True
    assert set(rep["proofs_any"][0]["assumptions"].values()) == {"holds"}
    assert rep["mismatches"] == []


def _with_flipped_manifest(tmp_path, flip, args):
    """Run `kvclaims check` on a copy of the manifest changed by `flip`."""
    m = json.loads(DEFAULT_PATH.read_text())
    flip(m)
    p = tmp_path / "m.json"
    p.write_text(json.dumps(m))
    return run(args + ["--no-sometimes", "--manifest", str(p), "--out", str(tmp_path / "out")],
               tmp_path)


def test_flipped_expectation_exits_12(tmp_path):
    r = _with_flipped_manifest(
        tmp_path, lambda m: m["verdicts"]["late_release"].update(O4={"verdict": "proved"}),
        ["--policy", "late_release", "--obligation", "O4"])
    assert r.returncode == 12
    assert "late_release O4: expected proved, got violated at depth 4" in r.stderr


def test_any_slots_verdict_is_pinned(tmp_path):
    r = _with_flipped_manifest(tmp_path, lambda m: m["any"]["hard_demote"].update(O13="unknown"),
                               ["--policy", "hard_demote", "--obligation", "O13"])
    assert r.returncode == 12
    assert "hard_demote O13 (any slots): expected unknown, got proved" in r.stderr
