"""Proofs for any number of claims and requests (checker/cutoff.py): the conformant policies
prove every candidate in the cutoff model with every assumption holding; a broken policy
fails there too; each assumption fails when the spec stops meeting it."""
import pytest

from kvclaims.checker import cutoff
from kvclaims.spec import actions
from kvclaims.spec.obligations import CHECKED, Invariant
from kvclaims.spec.policy import POLICIES, policy_by_name


@pytest.mark.parametrize("policy", ["hard_refuse", "hard_demote"])
def test_conformant_policies_prove_everything_for_any_number(policy):
    r = cutoff.prove_any(POLICIES[policy])
    assert r.assumptions == {"A0": [], "A1": [], "A2": [], "A3": []}
    assert r.proved == list(CHECKED)
    assert r.induction.dropped == {} and r.induction.unknown == {}


def test_a_broken_cap_is_not_proved_for_any_number():
    r = cutoff.prove_any(policy_by_name("accept_over_cap"))
    assert r.sound
    assert r.induction.dropped == {"O11": "accept[0]", "O12": "accept[0]"}


def test_taking_protected_blocks_breaks_the_rest_abstraction():
    # the rest's step lets admit take only unprotected blocks: a policy that takes protected
    # ones is outside the argument, and the check says so instead of proving anything
    r = cutoff.prove_any(policy_by_name("drop_protection_guard"))
    assert r.assumptions["A0"] == r.assumptions["A1"] == r.assumptions["A3"] == []
    assert [f.split(" ")[0] for f in r.assumptions["A2"]] == ["admit[0]"]
    assert r.proved == []


def test_an_action_reading_another_claim_fails_locality(monkeypatch):
    kind = actions.ACTIONS["release"]

    def nosy(ops, cfg, pol, s, idx, ch):
        other = s.claims[(idx[0] + 1) % cfg.K]
        return ops.And(kind.guard(ops, cfg, pol, s, idx, ch), other.status != 0)
    monkeypatch.setitem(actions.ACTIONS, "release",
                        actions.ActionKind("release", kind.slots, kind.choices, nosy,
                                           kind.effect))
    a = cutoff.check_assumptions(POLICIES["hard_refuse"], list(CHECKED), 20000)
    # both checks see it: replacing the claim, and merging it into a total
    assert a["A1"] == ["release[0] reads another claim or request in its guard",
                       "release[0] reads another claim or request in its guard (beyond totals)"]


def test_sequence_arithmetic_fails_a3(monkeypatch, tmp_path):
    monkeypatch.setitem(CHECKED, "X1", Invariant("X1", "arith", "", lambda o, c, p, s:
                                                 s.seq <= 5))
    a = cutoff.check_assumptions(POLICIES["hard_refuse"], ["X1"], 20000)
    assert a["A3"] == ["X1"]
    src = tmp_path / "actions.py"
    src.write_text("x = 1\nc2 = replace(c, end_seq=c.acc_seq + 1)\n")
    monkeypatch.setattr(cutoff, "SPEC_ACTIONS", src)
    assert cutoff.seq_uses_ok() == "spec/actions.py:2: c2 = replace(c, end_seq=c.acc_seq + 1)"


def test_the_spec_reads_sequence_numbers_only_against_zero():
    assert cutoff.seq_uses_ok() is None


def test_an_action_depending_on_the_slot_fails_symmetry(monkeypatch):
    kind = actions.ACTIONS["submit"]

    def first_only(ops, cfg, pol, s, idx, ch):
        return ops.And(kind.guard(ops, cfg, pol, s, idx, ch), idx[0] == 0)
    monkeypatch.setitem(actions.ACTIONS, "submit",
                        actions.ActionKind("submit", kind.slots, kind.choices, first_only,
                                           kind.effect))
    assert cutoff.check_symmetry(POLICIES["hard_refuse"], list(CHECKED), 20000) == [
        "submit[0] and submit[1] (claims exchanged)"]


def test_an_action_reading_more_than_totals_fails_locality(monkeypatch):
    # "no other object holds more than 3 blocks" survives replacing one claim by another
    # with the same sums, but not the rest's stand-ins, which hold totals
    kind = actions.ACTIONS["release"]

    def by_max(ops, cfg, pol, s, idx, ch):
        others = [c for k, c in enumerate(s.claims) if k != idx[0]]
        return ops.And(kind.guard(ops, cfg, pol, s, idx, ch),
                       *(c.hi - c.lo <= 3 for c in others))
    monkeypatch.setitem(actions.ACTIONS, "release",
                        actions.ActionKind("release", kind.slots, kind.choices, by_max,
                                           kind.effect))
    a = cutoff.check_assumptions(POLICIES["hard_refuse"], list(CHECKED), 20000)
    assert a["A1"] == ["release[0] reads another claim or request in its guard (beyond totals)"]
