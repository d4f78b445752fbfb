"""Every bad policy and every seeded mutation has a shortest counterexample of the expected
length, and each one replays through the concrete interpreter."""
import pytest

from kvclaims.checker.bmc import bmc
from kvclaims.checker.replay import ReplayError, replay
from kvclaims.spec.actions import Step
from kvclaims.spec.policy import MUTATIONS, POLICIES
from kvclaims.spec.vocab import ClaimStatus as CS, RequestStatus as RS

# (policy, obligation it is built to break, shortest counterexample length)
SIGNATURE = [
    ("native", "O3", 4),
    ("soft_priority", "O7", 2),
    ("write_no_admit", "O2", 4),
    ("block_count", "O5", 4),
    ("late_release", "O4", 4),
    ("misattribute", "O8", 1),
]
CAUGHT = [
    ("drop_protection_guard", "O3", 4),
    ("demotion_after_loss", "O4", 4),
    ("forget_blocking_claim", "O8", 4),
    ("skip_expiry_check", "O3", 5),
    ("count_blocks", "O5", 4),
    ("skip_owner_check", "O10", 3),
    # issue 15: one per new check, and the obligations no mutation reached before
    ("accept_over_cap", "O11", 2),
    ("demote_hard_claim", "O13", 4),
    ("silent_demotion", "O6", 4),
    ("predicate_k_minus_1", "O5", 2),
    ("harm_unaccepted", "O1", 3),
    ("materialize_unaccepted", "O9", 2),
    ("preference_lowering", "O7", 2),
    ("noadmit_as_bounding", "O2", 4),
    ("defer_forever", "O14", 2),
    ("refuse_when_waiting", "O15", 3),
    ("defer_when_fits", "O15", 1),
    ("misreport_conflict", "O16", 2),
    ("leak_on_finish", "S1", 2),
]


def _check(pol, ob, depth):
    r = bmc(pol, [ob], max_depth=depth + 1)
    tr = r.found[ob]
    assert tr.depth == depth
    # replay confirms, and the replay is strict: one step fewer does not violate it
    replay(tr.config, pol, tr.steps, violates=ob)
    with pytest.raises(ReplayError):
        replay(tr.config, pol, tr.steps[:-1], violates=ob)
    return tr


@pytest.mark.parametrize("policy,ob,depth", SIGNATURE)
def test_bad_policy_shortest_counterexample(policy, ob, depth):
    _check(POLICIES[policy], ob, depth)


@pytest.mark.parametrize("mutation,ob,depth", CAUGHT)
def test_seeded_mutation_is_caught(mutation, ob, depth):
    _check(MUTATIONS[mutation], ob, depth)


def test_no_shorter_counterexample_exists():
    r = bmc(POLICIES["native"], ["O3"], max_depth=3)
    assert r.found == {} and r.bound == 3


def test_late_release_announces_after_the_loss():
    tr = _check(POLICIES["late_release"], "O4", 4)
    last = tr.states[-1]
    i = next(i for i, c in enumerate(last.claims) if c.loss_seq > 0)
    assert last.claims[i].status in (CS.DEMOTED, CS.EXPIRED)
    assert last.claims[i].end_seq > last.claims[i].loss_seq


def test_replay_rejects_a_disabled_step():
    tr = _check(POLICIES["native"], "O3", 4)
    with pytest.raises(ReplayError, match="not enabled"):
        replay(tr.config, POLICIES["hard_refuse"], tr.steps)


def test_60_70_80_under_native_loses_the_tail():
    """The paper's case by hand: native evicts 50 blocks of the 60-block claimed prefix from
    its tail and never reports harm; hard_refuse defers then refuses and keeps all 60."""
    from kvclaims.checker.sometimes import REFERENCE_60_70_80 as cfg
    setup = [Step("submit", (0,)), Step("accept", (0,)), Step("materialize", (0,))]
    states = replay(cfg, POLICIES["native"],
                    setup + [Step("admit", (0,), (("take[0]", 50),))], violates="O3")
    c = states[-1].claims[0]
    assert (c.lo, c.hi, c.status) == (0, 10, CS.MATERIALIZED)
    states = replay(cfg, POLICIES["hard_refuse"],
                    setup + [Step("defer", (0,)), Step("refuse", (0,))])
    s = states[-1]
    assert (s.claims[0].lo, s.claims[0].hi) == (0, 60)
    assert s.requests[0].status == RS.REFUSED and s.requests[0].named == (True,)
