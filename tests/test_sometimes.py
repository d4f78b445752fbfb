"""Non-vacuity: under the conformant policies the conflict the contract is about, and every
action, really happen; a proof over a spec where they could not would prove nothing."""
import pytest

from kvclaims.checker.bmc import reach
from kvclaims.checker.run import Settings, check_sometimes
from kvclaims.checker.sometimes import goals
from kvclaims.checker.unreachable import prove_unreachable
from kvclaims.spec.policy import policy_by_name
from kvclaims.spec.vocab import ClaimStatus as CS, RequestStatus as RS

ST = Settings(depth=6, timeout_s=60)


@pytest.mark.parametrize("policy,goal,depth", [
    ("hard_refuse", "conflict", 3),
    ("hard_refuse", "conflict_60_70_80", 3),
    ("hard_refuse", "refused_60_70_80", 5),
    ("hard_demote", "served_after_demotion_60_70_80", 5),
    ("hard_demote", "soft_claim_harmed", 4),
    ("hard_refuse", "expired", 3),
])
def test_witness_depth(policy, goal, depth):
    r = check_sometimes(policy, goal, ST)
    assert r.depth == depth


def test_60_70_80_refusal_witness_is_the_paper_scenario():
    r = check_sometimes("hard_refuse", "refused_60_70_80", ST)
    actions = [s.action for s in r.trace.steps]
    assert sorted(actions[:3]) == ["accept", "materialize", "submit"]
    assert actions.index("submit") < actions.index("accept")
    assert actions[3:] == ["defer", "refuse"]
    last = r.trace.states[-1]
    assert last.claims[0].status == CS.MATERIALIZED
    assert (last.claims[0].lo, last.claims[0].hi) == (0, 60)
    assert last.requests[0].status == RS.REFUSED
    assert last.requests[0].named == (True,)


@pytest.mark.parametrize("policy", ["hard_refuse", "hard_demote"])
def test_every_action_fires(policy):
    outcomes = {g.id: check_sometimes(policy, g.id, ST).outcome
                for g in goals(policy) if g.id.startswith("action:")}
    # hard_refuse never demotes: that is the one difference between the two, and it is a
    # proof, not a bound
    assert {g for g, o in outcomes.items() if not isinstance(o, int)} == \
        ({"action:demote"} if policy == "hard_refuse" else set())
    if policy == "hard_refuse":
        assert outcomes["action:demote"] == "unreachable"


@pytest.mark.parametrize("policy,goal,slots,lemma", [
    ("hard_refuse", "action:demote", "3+3", None),
    ("hard_refuse", "served_after_demotion_60_70_80", "1+1",
     "the demotable claim is never demoted"),
    ("hard_refuse", "hard_claim_never_demoted_60_70_80", "1+1", "the hard claim is never demoted"),
    ("hard_demote", "hard_claim_never_demoted_60_70_80", "1+1", "the hard claim is never demoted"),
])
def test_expected_unreachable_goals_are_proved_unreachable(policy, goal, slots, lemma):
    r = check_sometimes(policy, goal, ST)
    assert (r.outcome, r.depth, r.trace) == ("unreachable", None, None)
    assert (r.unreachable.slots, r.unreachable.lemma) == (slots, lemma)
    assert "O13" in r.unreachable.invariants


@pytest.mark.parametrize("policy,goal,depth", [
    # the mutant that demotes hard claims: the lemma is not kept, so no proof; the bounded
    # search finds the demotion the proof would have hidden
    ("demote_hard_claim", "hard_claim_never_demoted_60_70_80", 4),
    # reachable goals are never "proved" unreachable
    ("hard_demote", "served_after_demotion_60_70_80", 5),
])
def test_no_unreachability_proof_for_a_reachable_goal(policy, goal, depth):
    g = next(g for g in goals("hard_demote") if g.id == goal)
    assert prove_unreachable(policy_by_name(policy), g.goal, 3, 3, g.config, 60000,
                             g.lemma, g.lemma_doc) is None
    tr = reach(policy_by_name(policy), g.id, g.goal, max_depth=6, config=g.config)
    assert tr is not None and tr.depth == depth
