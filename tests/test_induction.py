"""Parametric proofs: every obligation of both conformant policies is inductive (with the
documented strengthening), for all pool and claim sizes, with 3 claims and 3 requests."""
import pytest

from kvclaims.checker.induction import prove
from kvclaims.checker.symbolic import instances, sym_config
from kvclaims.spec.obligations import OBLIGATIONS, STRENGTHENING, SUPPORT
from kvclaims.spec.policy import MUTATIONS, POLICIES

ALL = list(STRENGTHENING) + list(OBLIGATIONS)


@pytest.mark.parametrize("policy", ["hard_refuse", "hard_demote"])
def test_conformant_policies_prove_everything(policy):
    r = prove(POLICIES[policy], K=3, R=3)
    assert r.proved == ALL
    assert r.dropped == {} and r.unknown == {}
    # one initiation query per candidate, then one combined query per action instance (all
    # candidates survive it, so none is asked alone): 14 actions give 50 instances over 3
    # claims and 3 requests
    assert len(instances(sym_config(3, 3))) == 50
    assert len(r.queries) == len(ALL) + 50
    assert [q.candidate for q in r.queries[len(ALL):]] == ["*"] * 50


@pytest.mark.parametrize("policy", ["hard_refuse", "hard_demote"])
@pytest.mark.parametrize("ob", sorted(SUPPORT))
def test_strengthening_is_needed_and_enough(policy, ob):
    alone = prove(POLICIES[policy], candidates=[ob])
    assert ob in alone.dropped, f"{ob} is inductive alone: drop it from SUPPORT"
    supported = prove(POLICIES[policy], candidates=list(SUPPORT[ob]) + [ob])
    assert supported.proved == list(SUPPORT[ob]) + [ob]


@pytest.mark.parametrize("policy", ["hard_refuse", "hard_demote"])
def test_other_obligations_are_inductive_alone(policy):
    for ob in OBLIGATIONS:
        if ob not in SUPPORT:
            assert prove(POLICIES[policy], candidates=[ob]).proved == [ob]


def test_failure_names_the_action():
    r = prove(POLICIES["late_release"])
    assert r.dropped["O4"] == "admit[0]"
    assert r.dropped["S5"] == "tick[]"
    r = prove(MUTATIONS["skip_owner_check"])
    assert r.dropped == {"O10": "release[0]"}
