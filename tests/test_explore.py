"""The explicit-state explorer: the staged spec equals the concrete interpreter, the pinned state
counts, explorer/z3 agreement on verdicts and shortest counterexample lengths."""
from __future__ import annotations

import random

import pytest
import z3

from kvclaims.checker.bmc import Unrolling
from kvclaims.checker.compile import compile_spec, from_tuple, to_tuple
from kvclaims.checker.explore import choice_domain, explore
from kvclaims.checker.state_spaces import compute, load_pinned, mismatches
from kvclaims.spec.actions import successor
from kvclaims.spec.algebra import CONCRETE as C, SYMBOLIC as Z
from kvclaims.spec.obligations import OBLIGATIONS
from kvclaims.spec.policy import MUTATIONS, POLICIES
from kvclaims.spec.state import ClaimConfig, Config, RequestConfig

ONE = Config(usable=4, cap=3, claims=(ClaimConfig(3, 0, 2, 0, 0, 0),),
             requests=(RequestConfig(3),))


@pytest.mark.parametrize("policy", ["native", "block_count", "hard_demote"])
def test_staged_spec_equals_concrete_interpreter(policy):
    pol = POLICIES[policy]
    cs = compile_spec(ONE, pol)
    r = explore(ONE, pol, max_clock=2, symmetry=False, traces=False)
    rng = random.Random(7)
    for t in rng.sample(r._states, 150):
        s = from_tuple(ONE, t)
        assert cs.all_hold(t) == all(o.holds(C, ONE, pol, s) for o in OBLIGATIONS.values())
        for ob, f in cs.invariants.items():
            assert f(t) == bool(OBLIGATIONS[ob].holds(C, ONE, pol, s))
        for inst in cs.instances:
            for ch in choice_domain(cs, inst)(t):
                chd = dict(zip((c.name for c in inst.choices), ch))
                from kvclaims.spec.actions import ACTIONS
                g = ACTIONS[inst.action].guard(C, ONE, pol, s, inst.slots, chd)
                assert inst.guard(t, ch) == bool(g)
                if g:
                    s2, _ = successor(C, ONE, pol, s, inst.step(ch), chd)
                    assert inst.effect(t, ch) == to_tuple(s2)


def test_state_spaces_as_pinned():
    assert mismatches(load_pinned(), compute()) == []


def test_pinned_counts_are_the_expected_numbers():
    p = load_pinned()
    assert p["one_claim"]["policies"]["hard_refuse"] == {
        "no_symmetry": {"distinct_states": 1140, "depth": 15},
        "symmetry": {"distinct_states": 244, "depth": 14}}
    assert p["pair"]["policies"]["hard_refuse"] == {
        "no_symmetry": {"distinct_states": 68121, "depth": 20},
        "symmetry": {"distinct_states": 6006, "depth": 20}}


def _z3_shortest(cfg, pol, depth):
    u = Unrolling(pol, cfg.K, cfg.R, 60000, config=cfg)
    found = {}
    while True:
        for ob in OBLIGATIONS:
            if ob not in found and u.check(
                    z3.Not(OBLIGATIONS[ob].holds(Z, u.cfg, pol, u.states[-1]))) == z3.sat:
                found[ob] = u.depth
        if u.depth >= depth:
            return found
        u.extend()


AGREE = [("native", ONE), ("write_no_admit", ONE), ("late_release", ONE), ("misattribute", ONE),
         ("hard_refuse", ONE),
         ("skip_expiry_check", Config(usable=4, cap=3,
                                      claims=(ClaimConfig(3, 0, 3, 4, 0, 0, 1),),
                                      requests=(RequestConfig(3),)))]


@pytest.mark.parametrize("policy,cfg", AGREE, ids=[a for a, _ in AGREE])
def test_explorer_and_z3_agree_on_the_same_bounds(policy, cfg):
    pol = POLICIES.get(policy) or MUTATIONS[policy]
    D = 5
    r = explore(cfg, pol, max_depth=D, max_clock=D)
    ours = {ob: tr.depth for ob, tr in r.traces.items()}
    assert ours == _z3_shortest(cfg, pol, D)


def test_shortest_counterexamples_of_native():
    r = explore(ONE, POLICIES["native"], max_clock=2)
    assert {o: t.depth for o, t in r.traces.items()} == {"O3": 4, "O4": 5, "O5": 4, "O6": 4}
    assert [s.action for s in r.traces["O3"].steps] == ["submit", "accept", "materialize",
                                                        "admit"]
    assert r.complete and r.verdict("O1") == "holds" and r.verdict("O3") == "violated"


def test_symmetry_keeps_verdicts_and_depths():
    cfg = Config(usable=4, cap=3, claims=(ClaimConfig(1, 0, 1, 0, 0, 0),) * 2,
                 requests=(RequestConfig(2),) * 2)
    a = explore(cfg, POLICIES["misattribute"], max_depth=6, max_clock=1, symmetry=False)
    b = explore(cfg, POLICIES["misattribute"], max_depth=6, max_clock=1, symmetry=True)
    assert b.distinct < a.distinct
    assert {o: t.depth for o, t in a.traces.items()} == {o: t.depth for o, t in b.traces.items()}
    assert set(a.traces) == {"O8"}


def test_graph_statistics():
    from kvclaims.checker.explore import graph_stats
    r = explore(ONE, POLICIES["hard_refuse"], max_clock=2, graph=True)
    st = graph_stats(r.graph)
    assert st["states"] == r.distinct == 244 and st["depth"] == r.depth == 14
    assert st["dead_ends"] == 0
