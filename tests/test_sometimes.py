"""Non-vacuity: under the conformant policies the conflict the contract is about, and every
action, really happen; a proof over a spec where they could not would prove nothing."""
import pytest

from kvclaims.checker.run import Settings, check_sometimes
from kvclaims.checker.sometimes import goals
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
    unreachable = []
    for g in goals(policy):
        if g.id.startswith("action:"):
            if check_sometimes(policy, g.id, ST).depth is None:
                unreachable.append(g.id)
    # hard_refuse never demotes: that is the one difference between the two
    assert unreachable == (["action:demote"] if policy == "hard_refuse" else [])
