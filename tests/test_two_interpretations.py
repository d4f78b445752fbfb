"""One definition, two interpretations: on random concrete states and steps, the concrete
reading of every guard, effect and obligation equals the z3 reading of the same code."""
import z3
from hypothesis import event, given, strategies as st

from kvclaims.checker.symbolic import lift_config, lift_state
from kvclaims.spec.actions import ACTIONS, successor
from kvclaims.spec.algebra import CONCRETE as C, SYMBOLIC as Z
from kvclaims.spec.obligations import OBLIGATIONS, STRENGTHENING
from kvclaims.spec.policy import MUTATIONS, POLICIES
from kvclaims.spec.state import flat_fields, initial_state

from spec_strategies import configs, is_enabled, step_for

ALL_POLICIES = list(POLICIES.values()) + list(MUTATIONS.values())


def _val(term):
    v = z3.simplify(term if isinstance(term, z3.ExprRef) else
                    (z3.BoolVal(term) if isinstance(term, bool) else z3.IntVal(term)))
    if z3.is_true(v):
        return True
    if z3.is_false(v):
        return False
    assert z3.is_int_value(v), f"not closed: {v}"
    return v.as_long()


def _lift_choices(ch):
    return {k: (z3.BoolVal(v) if isinstance(v, bool) else z3.IntVal(v)) for k, v in ch.items()}


@given(st.data())
def test_concrete_and_symbolic_steps_agree(data):
    cfg = data.draw(configs())
    pol = data.draw(st.sampled_from(ALL_POLICIES))
    zcfg = lift_config(cfg)
    s = initial_state(cfg)
    compared = 0
    for _ in range(data.draw(st.integers(1, 14))):
        step = data.draw(step_for(cfg, pol, s))
        ch = dict(step.choices)
        kind = ACTIONS[step.action]
        zs, zch = lift_state(s), _lift_choices(ch)
        g = kind.guard(C, cfg, pol, s, step.slots, ch)
        assert bool(g) == _val(kind.guard(Z, zcfg, pol, zs, step.slots, zch)), step.label()
        s2, _ = successor(C, cfg, pol, s, step, ch)
        z2, _ = successor(Z, zcfg, pol, zs, step, zch)
        for (name, a), (_, b) in zip(flat_fields(s2), flat_fields(z2)):
            assert a == _val(b), f"{step.label()}: {name} concrete {a} symbolic {b}"
        for inv in list(OBLIGATIONS.values()) + list(STRENGTHENING.values()):
            assert bool(inv.holds(C, cfg, pol, s2)) == _val(inv.holds(Z, zcfg, pol, z2)), inv.id
        compared += 1
        if g:
            event(f"enabled {step.action}")
            s = s2
    assert compared >= 1


@given(st.data())
def test_conformant_runs_keep_every_obligation(data):
    """Random enabled runs of the conformant policies never break an obligation or a
    strengthening invariant (a concrete cross-check of the proofs)."""
    cfg = data.draw(configs())
    pol = data.draw(st.sampled_from([POLICIES["hard_refuse"], POLICIES["hard_demote"]]))
    s = initial_state(cfg)
    for _ in range(data.draw(st.integers(1, 25))):
        step = data.draw(step_for(cfg, pol, s))
        if not is_enabled(cfg, pol, s, step):
            continue
        s, _ = successor(C, cfg, pol, s, step, dict(step.choices))
        for inv in list(OBLIGATIONS.values()) + list(STRENGTHENING.values()):
            assert inv.holds(C, cfg, pol, s), f"{inv.id} broken by {step.label()}"
