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
    got = {(x["policy"], x["obligation"]): x for x in rep["results"]}
    assert set(got) == {("misattribute", "O8"), ("misattribute", "O3"),
                        ("hard_refuse", "O8"), ("hard_refuse", "O3")}
    v = got[("misattribute", "O8")]
    assert v["verdict"] == "violated" and v["depth"] == 1 and v["parametric"] is False
    assert Path(v["counterexample"]).exists()
    for key in [("misattribute", "O3"), ("hard_refuse", "O8"), ("hard_refuse", "O3")]:
        assert got[key]["verdict"] == "proved" and got[key]["parametric"] is True
    assert rep["mismatches"] == []


def test_flipped_expectation_exits_12(tmp_path):
    m = json.loads(DEFAULT_PATH.read_text())
    m["verdicts"]["late_release"]["O4"] = {"verdict": "proved"}
    p = tmp_path / "m.json"
    p.write_text(json.dumps(m))
    r = run(["--policy", "late_release", "--obligation", "O4", "--no-sometimes",
             "--manifest", str(p), "--out", str(tmp_path / "out")], tmp_path)
    assert r.returncode == 12
    assert "late_release O4: expected proved, got violated at depth 4" in r.stderr
