"""Telemetry: every event the MicroRuntime emits validates against model/telemetry.schema.json,
with a schema version, a monotonic sequence number and one run id (issue 4, item 4)."""
from __future__ import annotations

import io
import json

import pytest
from hypothesis import given, settings, strategies as st

from kvclaims.model.claims import CacheIdentity, ClaimSpec, Predicate
from kvclaims.model.runtime import MicroRuntime, synthetic_tokens
from kvclaims.model.telemetry import SCHEMA_VERSION, Telemetry, schema, schema_errors
from kvclaims.spec.events import EVENT_TYPES
from kvclaims.spec.policy import POLICIES
from kvclaims.spec.vocab import Mode

ID = CacheIdentity()


def busy_run(policy: str, mode: Mode, telemetry: Telemetry) -> MicroRuntime:
    """Every kind of event: claims of every outcome, conflicts, victims, hits, expiry."""
    rt = MicroRuntime(21, policy, protected_cap_blocks=12, telemetry=telemetry)
    for o, n in (("A", 8), ("B", 6)):
        rt.register_object(o, synthetic_tokens(o, n), ID)
        rt.materialize(o)
    rt.submit_claim(ClaimSpec("ca", "t1", ID, "A", Predicate(0, 8), 8, mode,
                              3 if mode == Mode.EXPIRING else None))
    rt.submit_claim(ClaimSpec("cb", "t2", ID, "B", Predicate(1, 4), 6, Mode.SOFT_PRIORITY))
    rt.submit_claim(ClaimSpec("ca", "t1", ID, "B", Predicate(0, 1), 6, mode, 2))   # duplicate
    rt.submit_claim(ClaimSpec("cc", "t1", ID, "B", Predicate(0, 6), 6, Mode.DEMOTABLE))
    rt.release_claim("cb", "t1")
    rt.new_request("hit", synthetic_tokens("A", 2), ID)
    rt.reuse("hit", "A")
    for j, n in enumerate((15, 9, 4)):
        rt.new_request(f"r{j}", synthetic_tokens(f"r{j}", n), ID, admit_future_reuse=j != 1)
        for _ in range(3):
            if rt.requests[f"r{j}"].status.name in ("NONE", "DEFERRED"):
                rt.arbitrate(f"r{j}")
        rt.tick()
    for r in list(rt.requests):
        rt.finish(r)
    rt.evict_cached_block()
    rt.evict_object_block("B")
    rt.release_claim("cb", "t2")
    return rt


def test_schema_names_exactly_the_spec_event_types():
    assert schema()["properties"]["type"]["enum"] == list(EVENT_TYPES)
    assert schema()["properties"]["schema_version"]["const"] == SCHEMA_VERSION


@pytest.mark.parametrize("policy", list(POLICIES))
@pytest.mark.parametrize("mode", [Mode.HARD_PROTECTED, Mode.EXPIRING])
def test_every_emitted_event_validates(policy, mode):
    out = io.StringIO()
    rt = busy_run(policy, mode, Telemetry(run_id="run-1", stream=out))
    evs = rt.telemetry.events
    assert [e["seq"] for e in evs] == list(range(1, len(evs) + 1))
    assert {e["run_id"] for e in evs} == {"run-1"}
    for e in evs:
        assert schema_errors(e) == [], e
    assert [json.loads(line) for line in out.getvalue().splitlines()] == evs


def test_busy_run_covers_most_event_types():
    seen = set()
    for policy in POLICIES:
        for mode in (Mode.HARD_PROTECTED, Mode.EXPIRING):
            rt = busy_run(policy, mode, Telemetry())
            rt.close_run()
            seen |= {e["type"] for e in rt.telemetry.events}
    assert set(EVENT_TYPES) - seen == set()


def test_events_go_to_a_file(tmp_path):
    p = tmp_path / "t.jsonl"
    tel = Telemetry(run_id="f", path=str(p))
    busy_run("hard_refuse", Mode.HARD_PROTECTED, tel)
    tel.close()
    assert [json.loads(x) for x in p.read_text().splitlines()] == tel.events


@pytest.mark.parametrize("mutate,where", [
    (lambda e: e.pop("seq"), "<event>: 'seq' is a required property"),
    (lambda e: e.update(type="claim_vanished"), "type: 'claim_vanished' is not one of"),
    (lambda e: e.update(seq=0), "seq: 0 is less than the minimum of 1"),
    (lambda e: e.pop("blocking_claim_ids"), "<event>: 'blocking_claim_ids' is a required"),
    (lambda e: e.update(feasibility="maybe"), "feasibility: 'maybe' is not one of"),
])
def test_broken_events_do_not_validate(mutate, where):
    rt = busy_run("hard_refuse", Mode.HARD_PROTECTED, Telemetry())
    e = dict(next(e for e in rt.telemetry.events if e["type"] == "conflict"))
    mutate(e)
    errs = schema_errors(e)
    assert len(errs) == 1 and errs[0].startswith(where), errs


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(list(POLICIES)), st.lists(st.integers(1, 12), min_size=1, max_size=6))
def test_random_workloads_emit_valid_events(policy, sizes):
    rt = MicroRuntime(17, policy, protected_cap_blocks=10)
    rt.register_object("A", synthetic_tokens("A", 6), ID)
    rt.materialize("A")
    rt.submit_claim(ClaimSpec("c", "t", ID, "A", Predicate(0, 6), 6, Mode.HARD_PROTECTED))
    for j, n in enumerate(sizes):
        rt.new_request(f"r{j}", synthetic_tokens(f"r{j}", n), ID)
        rt.arbitrate(f"r{j}")
        if j % 2:
            rt.finish(f"r{j - 1}")
    for e in rt.telemetry.events:
        assert schema_errors(e) == [], e
