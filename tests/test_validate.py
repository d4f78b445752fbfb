"""`kvclaims validate` (issue 11): trace validation of telemetry against the spec.

Every litmus run on the spec and on the MicroRuntime, written as telemetry in the project's
schema and in the artifact's schema 1, must validate as a behaviour of the policy it ran under,
with exactly the obligations the litmus suite says it breaks (O7 aside: no telemetry names the
lowering primitive, so it is never evidenced).  Each seeded trace mutation must be caught with
its obligation at its event; bad files must exit 2 with one line."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from kvclaims import cli
from kvclaims.checker.export_artifact_v1 import write_artifact_v1
from kvclaims.checker.itf import read_itf
from kvclaims.checker.replay import replay
from kvclaims.checker.validate import validate
from kvclaims.model.telemetry import dump_jsonl
from kvclaims.refinement.model_target import ModelTarget
from kvclaims.spec.actions import Step
from kvclaims.spec.policy import POLICIES
from kvclaims.spec.state import ClaimConfig, Config, RequestConfig

from trace_runs import litmus_runs, write

RUNS = litmus_runs()
MODEL_RUNS = {r.name: r for r in RUNS if r.target == "model"}


def violated(rep):
    return sorted((v.obligation for v in rep.obligations if v.verdict == "violated"),
                  key=lambda o: int(o[1:]))


def expected(run):
    return [o for o in run.broken if o != "O7"]


@pytest.mark.parametrize("run", RUNS, ids=[r.name for r in RUNS])
def test_litmus_telemetry_agrees_with_litmus_verdict(run, tmp_path):
    rep = validate(str(write(run, tmp_path)))
    assert run.policy in rep.consistent_with
    assert violated(rep) == expected(run)


@pytest.mark.parametrize("run", [r for r in RUNS if r.target == "model"],
                         ids=[r.name for r in RUNS if r.target == "model"])
def test_artifact_schema_export_gives_the_same_verdicts(run, tmp_path):
    path = tmp_path / "run.art.jsonl"
    write_artifact_v1(run.events, str(path))
    rep = validate(str(path))
    assert rep.format == "artifact-v1"
    assert run.policy in rep.consistent_with
    assert violated(rep) == expected(run)
    assert rep.imported.unknown == []


def test_counts_of_the_suite():
    """The suite this file covers: 62 runs per target (L1-L7, C1, H1, M1, P1, R1, W1; their
    variants and policies)."""
    assert sum(r.target == "spec" for r in RUNS) == 62
    assert len(MODEL_RUNS) == 62


# --- mutations: each caught with its obligation, at its event -------------------------------

def _renumber(events):
    return [dict(e, seq=n) for n, e in enumerate(events, start=1)]


def _mutated(tmp_path, name, events):
    p = tmp_path / f"{name}.jsonl"
    dump_jsonl(_renumber(events), str(p))
    return validate(str(p))


def _only(rep):
    bad = [v for v in rep.obligations if v.verdict == "violated"]
    return [(v.obligation, v.event) for v in bad]


def test_dropped_refusal_is_O6(tmp_path):
    ev = list(MODEL_RUNS["L3-full-hard_refuse-model"].events)
    rep = _mutated(tmp_path, "dropped", [e for e in ev if e["type"] != "request_refused"])
    # the refusal's conflict (event 7) is left with no outcome
    assert _only(rep) == [("O6", 7)]
    assert rep.consistent_with == []


def test_victim_before_demotion_is_O4(tmp_path):
    ev = list(MODEL_RUNS["L4-full-hard_demote-model"].events)
    demoted = next(e for e in ev if e["type"] == "claim_demoted")
    rest = [e for e in ev if e is not demoted]
    last_victim = max(n for n, e in enumerate(rest) if e["type"] == "victim")
    rep = _mutated(tmp_path, "late", rest[:last_victim + 1] + [demoted] + rest[last_victim + 1:])
    assert _only(rep) == [("O4", 7)]
    assert rep.consistent_with == ["late_release"]
    assert next(v for v in rep.obligations if v.obligation == "O4").claim == "c0"


def test_wrong_blocking_claim_is_O8(tmp_path):
    ev = [dict(e, blocking_claim_ids=["c9"]) if "blocking_claim_ids" in e else e
          for e in MODEL_RUNS["L3-full-hard_refuse-model"].events]
    rep = _mutated(tmp_path, "wrong", ev)
    assert _only(rep) == [("O8", 5)]


def test_missing_claim_identity_is_O6(tmp_path):
    ev = [{k: v for k, v in e.items() if not (k == "claim_id" and e["type"] == "claim_accepted")}
          for e in MODEL_RUNS["L3-full-hard_refuse-model"].events]
    rep = _mutated(tmp_path, "anonymous", ev)
    assert _only(rep)[0] == ("O6", 3)


# --- the command ----------------------------------------------------------------------------

def test_exit_codes_json_and_failing_prefix(tmp_path, capsys):
    good = write(MODEL_RUNS["L3-full-hard_refuse-model"], tmp_path)
    bad = write(MODEL_RUNS["L3-full-native-model"], tmp_path)
    out = tmp_path / "v.json"
    assert cli.main(["validate", str(good), "--json", str(out), "--out", str(tmp_path / "g")]) == 0
    doc = json.loads(out.read_text())
    assert {"trace", "format", "events", "consistent_with", "obligations"} <= set(doc)
    assert doc["events"] == 8 and doc["format"] == "kvclaims"
    assert [o["verdict"] for o in doc["obligations"]].count("holds") == 15     # all 16 but O7 (no primitive named)
    assert cli.main(["validate", str(bad), "--out", str(tmp_path / "b")]) == 12
    text = capsys.readouterr().out
    assert "consistent with: native, soft_priority" in text
    tr = read_itf(tmp_path / "b" / "O3.itf.json")
    assert tr.goal == "O3" and tr.policy == "native"
    replay(tr.config, POLICIES[tr.policy], tr.steps, violates="O3")


def test_policy_option_restricts_the_question(tmp_path, capsys):
    native = write(MODEL_RUNS["L3-full-native-model"], tmp_path)
    assert cli.main(["validate", str(native), "--policy", "hard_refuse", "--json"]) == 12
    doc = json.loads(capsys.readouterr().out)
    assert doc["consistent_with"] == []
    assert doc["policies"]["hard_refuse"] == {
        "consistent": False, "event": 5, "obligation": "O3", "reason": "admit is not enabled"}


@pytest.mark.parametrize("content,message", [
    ("{not json\n", "not JSON"),
    ('{"schema_version": "kvclaims.telemetry/1", "seq": 1, "type": "tick"', "truncated"),
    ('{"schema_version": 7, "seq": 1, "type": "victim"}\n', "unknown schema version"),
    ('{"schema_version": 2, "event": "x"}\n', "unknown schema version"),
    ("", "no events"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, content, message):
    p = tmp_path / "bad.jsonl"
    p.write_text(content)
    assert cli.main(["validate", str(p)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_sequence_gap_is_truncation(tmp_path, capsys):
    ev = list(MODEL_RUNS["L3-full-hard_refuse-model"].events)
    p = tmp_path / "gap.jsonl"
    dump_jsonl(ev[:3] + ev[4:], str(p))
    assert cli.main(["validate", str(p)]) == 2
    assert "truncated: seq 5 after seq 3" in capsys.readouterr().err


def test_unknown_artifact_events_are_reported_not_dropped(tmp_path):
    p = tmp_path / "a.jsonl"
    write_artifact_v1(MODEL_RUNS["L3-full-hard_refuse-model"].events, str(p))
    lines = p.read_text().splitlines()
    last = json.loads(lines[-1])["timestamp_ns"]
    extra = dict(json.loads(lines[0]), event="resident_claim_teleported", timestamp_ns=last + 1)
    off = dict(json.loads(lines[0]), event="resident_claim_offloaded", timestamp_ns=last + 2)
    p.write_text("\n".join(lines + [json.dumps(extra), json.dumps(off)]) + "\n")
    rep = validate(str(p))
    n = len(lines)
    assert rep.imported.unknown == [(n + 1, "resident_claim_teleported")]
    assert rep.imported.unmodelled == [(n + 2, "resident_claim_offloaded")]
    verdict = {v.obligation: v.verdict for v in rep.obligations}
    assert verdict["O6"] == verdict["O9"] == "not_evidenced"
    assert "hard_refuse" in rep.consistent_with


# --- properties -----------------------------------------------------------------------------

@st.composite
def workloads(draw):
    usable = draw(st.integers(3, 10))
    claims = []
    for _ in range(draw(st.integers(1, 2))):
        f = draw(st.integers(1, usable - 1))
        claims.append(ClaimConfig(f, 0, draw(st.integers(1, f)),
                                  draw(st.sampled_from([0, 2, 5])), 0, 0, 0))
    reqs = tuple(RequestConfig(draw(st.integers(1, usable))) for _ in range(draw(st.integers(1, 2))))
    cfg = Config(usable, draw(st.integers(0, usable)), tuple(claims), reqs)
    acts = ("submit", "accept", "reject", "materialize", "admit", "finish", "evict",
            "defer", "refuse", "demote")
    steps = draw(st.lists(st.tuples(st.sampled_from(acts), st.integers(0, 3),
                                    st.integers(0, 3)), max_size=14))
    pol = draw(st.sampled_from(sorted(POLICIES)))
    return cfg, pol, steps


def _run_model(cfg, pol, steps):
    t = ModelTarget(run_id="prop")
    t.reset(cfg, POLICIES[pol])
    for a, x, y in steps:
        slots = ((x % cfg.R, y % cfg.K) if a == "demote" else
                 (x % cfg.R,) if a in ("admit", "finish", "defer", "refuse") else (x % cfg.K,))
        t.apply(Step(a, slots))
    return t.rt.telemetry.events


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(workloads())
def test_every_microruntime_trace_validates_under_its_policy(tmp_path_factory, w):
    cfg, pol, steps = w
    events = _run_model(cfg, pol, steps)
    if not events:
        return
    p = tmp_path_factory.mktemp("prop") / "t.jsonl"
    dump_jsonl(events, str(p))
    rep = validate(str(p))
    assert pol in rep.consistent_with
    if POLICIES[pol].conformant:
        assert violated(rep) == []


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(workloads())
def test_a_misnamed_blocking_claim_is_always_caught(tmp_path_factory, w):
    cfg, pol, steps = w
    events = _run_model(cfg, pol, steps)
    named = [n for n, e in enumerate(events) if e["type"] == "conflict"
             and e.get("arbiter_action") in ("defer", "refuse")]
    if not named:
        return
    n = named[0]
    events = [dict(e, blocking_claim_ids=["nobody"]) if k == n else e
              for k, e in enumerate(events)]
    p = tmp_path_factory.mktemp("mut") / "t.jsonl"
    dump_jsonl(events, str(p))
    rep = validate(str(p))
    assert pol not in rep.consistent_with
    o8 = next(v for v in rep.obligations if v.obligation == "O8")
    assert o8.verdict == "violated" and o8.event == n + 1


def test_artifact_runs_needs_a_checkout(tmp_path, capsys):
    from kvclaims.checker import artifact_runs
    assert artifact_runs.main([str(tmp_path / "nowhere")]) == 2
    (tmp_path / "artifacts").mkdir()
    # an empty checkout: every run is reported missing, so the recorded verdicts differ
    assert artifact_runs.main([str(tmp_path)]) == 12
    out = capsys.readouterr().out
    assert out.count("missing") == len(artifact_runs.RUNS) == 29


def test_format_and_policy_options_are_checked(tmp_path, capsys):
    good = write(MODEL_RUNS["L3-full-hard_refuse-model"], tmp_path)
    assert cli.main(["validate", str(good), "--format", "artifact-v1"]) == 2
    assert "--format artifact-v1, but the trace is kvclaims" in capsys.readouterr().err
    assert cli.main(["validate", str(good), "--policy", "lenient"]) == 2
    assert "unknown policy 'lenient'" in capsys.readouterr().err


def test_wrong_blocking_claim_in_the_artifact_schema_is_O8(tmp_path):
    p = tmp_path / "a.jsonl"
    write_artifact_v1(MODEL_RUNS["L3-full-hard_refuse-model"].events, str(p))
    lines = [json.loads(x) for x in p.read_text().splitlines()]
    for d in lines:
        if d["event"] in ("active_request_deferred", "active_request_refused"):
            d["blocking_claim_ids"] = ["claim:elsewhere"]
    p.write_text("".join(json.dumps(d) + "\n" for d in lines))
    rep = validate(str(p))
    first = next(n for n, d in enumerate(lines, start=1) if d["event"] == "active_request_deferred")
    assert _only(rep) == [("O8", first)]
