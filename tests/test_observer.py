"""O6: the observer rebuilds a run from its events alone, flags breaches, and refuses to take a
damaged trace for a whole one (issue 4, items 5 and 8)."""
from __future__ import annotations

import json

import pytest

from kvclaims.cli import main
from kvclaims.model.claims import CacheIdentity, ClaimSpec, Predicate
from kvclaims.model.observer import TelemetryError, observe_file, read_jsonl, reconstruct
from kvclaims.model.runtime import MicroRuntime, synthetic_tokens
from kvclaims.model.telemetry import dump_jsonl
from kvclaims.spec.vocab import Mode

ID = CacheIdentity()


def l3(policy="hard_refuse", mode=Mode.HARD_PROTECTED, need=70, two_claims=False):
    rt = MicroRuntime(81, policy, protected_cap_blocks=80)
    rt.register_object("A", synthetic_tokens("A", 60), ID)
    rt.new_request("B", synthetic_tokens("B", need), ID)
    rt.materialize("A")
    rt.submit_claim(ClaimSpec("claim-A", "t", ID, "A", Predicate(0, 60), 60, mode))
    if two_claims:
        rt.register_object("Z", synthetic_tokens("Z", 4), ID)
        rt.submit_claim(ClaimSpec("claim-Z", "t", ID, "Z", Predicate(0, 4), 4, mode))
    for _ in range(3):
        if rt.requests["B"].status.name in ("NONE", "DEFERRED"):
            rt.arbitrate("B")
    return rt


def kinds(rec):
    return [(f.kind, f.claim_id or f.request_id) for f in rec.findings]


def test_reconstructs_lifecycle_conflicts_and_outcomes():
    rec = reconstruct(l3().telemetry.events)
    c = rec.claims["claim-A"]
    assert (c.object_id, c.protection_mode, c.predicate, c.status) == (
        "A", "hard_protected", (0, 60), "materialized")
    assert [(x.arbiter_action, x.blocking_claim_ids, x.protected_resident_blocks,
             x.active_live_blocks_required, x.capacity_shortfall_blocks, x.feasibility)
            for x in rec.conflicts] == [("defer", ("claim-A",), 60, 70, 50, "infeasible"),
                                        ("refuse", ("claim-A",), 60, 70, 50, "infeasible")]
    assert rec.outcomes() == {"claim:claim-A": "materialized", "request:B": "refused"}
    assert rec.findings == []


@pytest.mark.parametrize("policy,expected", [
    ("native", [("protected_victim", "claim-A"), ("unreported_loss", "claim-A")]),
    ("late_release", [("protected_victim", "claim-A"), ("release_after_loss", "claim-A")]),
    ("write_no_admit", [("live_underreported", "B"), ("protected_victim", "claim-A")]),
])
def test_flags_the_bad_policies_from_events_alone(policy, expected):
    rec = reconstruct(l3(policy).telemetry.events)
    assert sorted(set(kinds(rec))) == expected


def test_write_no_admit_harm_is_reported_not_hidden():
    rec = reconstruct(l3("write_no_admit").telemetry.events)
    assert rec.claims["claim-A"].status == "harmed"
    assert rec.claims["claim-A"].harm_cause == "admit:B"


def test_flags_misattribution():
    rec = reconstruct(l3("misattribute", two_claims=True).telemetry.events)
    assert kinds(rec) == [("misattribution", "B"), ("misattribution", "B")]
    assert rec.conflicts[0].blocking_claim_ids == ("claim-A", "claim-Z")


def test_truncated_and_reordered_traces_are_reported():
    evs = l3().telemetry.events
    assert kinds(reconstruct(evs[3:]))[0] == ("truncated", None)
    gap = evs[:4] + evs[6:]
    assert ("truncated", None) in kinds(reconstruct(gap))
    swapped = evs[:4] + [evs[5], evs[4]] + evs[6:]
    assert ("reordered", None) in kinds(reconstruct(swapped))
    mixed = evs[:4] + [dict(evs[4], run_id="other")] + evs[5:]
    assert ("mixed_runs", None) in kinds(reconstruct(mixed))


def test_lifecycle_out_of_order_is_reported():
    evs = l3().telemetry.events
    acc = next(i for i, e in enumerate(evs) if e["type"] == "claim_accepted")
    bad = [dict(e) for e in evs]
    bad[acc], bad[acc + 1] = dict(bad[acc + 1], seq=bad[acc]["seq"]), dict(
        bad[acc], seq=bad[acc + 1]["seq"])
    assert ("lifecycle", "claim-A") in kinds(reconstruct(bad))


def test_reads_files_and_names_the_bad_line(tmp_path):
    p = tmp_path / "t.jsonl"
    evs = l3().telemetry.events
    dump_jsonl(evs, str(p))
    assert read_jsonl(str(p)) == evs
    assert observe_file(str(p)).outcomes()["request:B"] == "refused"
    lines = p.read_text().splitlines()
    lines[2] = lines[2][:-5]
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(TelemetryError, match=r"t.jsonl:3: not JSON"):
        read_jsonl(str(p))
    lines[2] = json.dumps({"seq": 3})
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(TelemetryError, match=r"t.jsonl:3: not a telemetry event: <event>: "
                                             r"'schema_version' is a required property"):
        read_jsonl(str(p))


def closed(rt):
    """The run's events ending with the run-closing event (the runtimes emit it themselves
    once the lead's side of issue 15 lands; close_run() is idempotent)."""
    last = rt.telemetry.events[-1]
    rt.telemetry.close_run(policy=last["policy"], usable_blocks=last["usable_blocks"])
    return rt.telemetry.events


def test_trace_without_run_closed_is_incomplete(tmp_path, capsys):
    evs = closed(l3())
    assert reconstruct(evs).verdict == "whole"
    cut = evs[:8]                       # the first 8 events: no finding, but not a whole run
    assert reconstruct(cut).findings == []
    assert reconstruct(cut).verdict == "incomplete"
    p = tmp_path / "cut.jsonl"
    dump_jsonl(cut, str(p))
    assert main(["observe", str(p)]) == 12
    assert "verdict: incomplete" in capsys.readouterr().out
    after = evs + [dict(evs[-1], seq=evs[-1]["seq"] + 1, type="request_finished",
                        request_id="B")]
    assert ("after_close", None) in kinds(reconstruct(after))


def test_cli_observe_exit_codes(tmp_path, capsys):
    good, bad, broken = (tmp_path / n for n in ("good.jsonl", "bad.jsonl", "broken.jsonl"))
    dump_jsonl(closed(l3()), str(good))
    dump_jsonl(closed(l3("native")), str(bad))
    broken.write_text("{not json\n")
    assert main(["observe", str(good)]) == 0
    assert "request B => refused" in capsys.readouterr().out
    assert main(["observe", str(bad), "--json"]) == 12
    assert json.loads(capsys.readouterr().out)["findings"][0]["kind"] == "protected_victim"
    assert main(["observe", str(broken)]) == 2
    assert capsys.readouterr().err.strip().startswith(
        f"kvclaims observe: {broken}:1: not JSON: Expecting property name enclosed in double "
        f"quotes")
    assert main(["observe", str(tmp_path / "missing.jsonl")]) == 2


def test_a_trace_from_another_runtime():
    """Hand-written events in the schema (no MicroRuntime involved): a runtime that stores a
    4-block prefix, accepts a hard claim on it, then loses position 0 silently."""
    base = {"schema_version": "kvclaims.telemetry/1", "ts": 0.0, "run_id": "ext",
            "policy": "theirs", "usable_blocks": 8}
    claim = {"claim_id": "k", "object_id": "P", "predicate": {"kind": "leading_prefix_at_least",
                                                              "k": 4},
             "blocks_required": 4, "blocks_materialized": 4, "leading_blocks_survived": 4,
             "protection_mode": "hard_protected"}
    evs = [dict(base, seq=1, type="object_stored", object_id="P", blocks=4),
           dict(base, seq=2, type="claim_submitted", owner_scope="o", footprint_blocks=4,
                cache_identity={"key_domain": "d", "model_id": "m", "tokenizer_id": "t",
                                "salt_namespace": "", "block_size": 16}, **claim),
           dict(base, seq=3, type="claim_accepted", **claim),
           dict(base, seq=4, type="claim_materialized", **claim),
           dict(base, seq=5, type="victim", block_id=3, blocks=1, object_id="P",
                logical_position=0, protected=False, reason="lru", claim_id="k"),
           dict(base, seq=6, type="request_admitted", request_id="x", live_blocks=5,
                admit_future_reuse=True)]
    from kvclaims.model.telemetry import schema_errors
    assert [schema_errors(e) for e in evs] == [[]] * 6
    rec = reconstruct(evs)
    assert kinds(rec) == [("unreported_loss", "k")]
    assert rec.findings[0].seq == 5 and rec.outcomes() == {"claim:k": "materialized",
                                                           "request:x": "running"}
