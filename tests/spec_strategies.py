"""Hypothesis strategies for concrete configurations and enabled step sequences of the spec."""
from __future__ import annotations

from hypothesis import strategies as st

from kvclaims.spec.actions import ACTIONS, Step, enabled
from kvclaims.spec.algebra import CONCRETE as C
from kvclaims.spec.state import ClaimConfig, Config, RequestConfig
from kvclaims.spec.vocab import Mode


@st.composite
def configs(draw, max_slots=3, max_usable=12):
    usable = draw(st.integers(1, max_usable))
    claims = []
    for _ in range(draw(st.integers(1, max_slots))):
        f = draw(st.integers(1, max_usable))
        start = draw(st.integers(0, f - 1))
        length = draw(st.integers(1, f - start))
        # demotable weighted up: only it can be demoted (O13), and workloads must reach it
        mode = draw(st.sampled_from(list(Mode) + [Mode.DEMOTABLE] * 2))
        dur = draw(st.integers(1, 3)) if mode == Mode.EXPIRING else draw(st.integers(0, 2))
        claims.append(ClaimConfig(f, start, length, int(mode), draw(st.integers(0, 2)),
                                  draw(st.integers(0, 1)), dur))
    reqs = [RequestConfig(draw(st.integers(1, max_usable + 2)), draw(st.integers(0, 1)))
            for _ in range(draw(st.integers(1, max_slots)))]
    return Config(usable, draw(st.integers(0, usable)), tuple(claims), tuple(reqs))


def greedy_victims(cfg, s, need, tail=True):
    """A victim choice that covers `need` from empty, then cached, then objects tail first."""
    short = need - min(s.empty, need)
    ch = {"take_cached": min(short, s.cached)}
    short -= ch["take_cached"]
    for i, c in enumerate(s.claims):
        t = min(short, c.hi - c.lo)
        ch[f"take[{i}]"] = t
        ch[f"head[{i}]"] = not tail
        short -= t
    return ch


@st.composite
def step_for(draw, cfg, pol, s):
    """A step instance: usually one the concrete guard enables (so runs go deep), otherwise
    any instance with arbitrary choices (mostly disabled, which exercises the guards)."""
    plausible = []
    for name, kind in ACTIONS.items():
        for slots in kind.slots(cfg):
            ch = {c.name: (False if c.sort == "bool" else 0) for c in kind.choices(cfg, pol)}
            if name == "admit":
                ch["admit"] = True
                ch.update(greedy_victims(cfg, s, cfg.requests[slots[0]].need))
            if name == "release":
                ch["actor"] = cfg.claims[slots[0]].owner
            step = Step(name, slots, tuple(ch.items()))
            if is_enabled(cfg, pol, s, step):
                plausible.append(step)
    if plausible and draw(st.integers(0, 3)) > 0:
        step = draw(st.sampled_from(plausible))
        ch = dict(step.choices)
        for c in ACTIONS[step.action].choices(cfg, pol):
            if c.sort == "bool" and c.name.startswith(("admit", "name", "head")):
                ch[c.name] = draw(st.booleans())
        return Step(step.action, step.slots, tuple(ch.items()))
    name = draw(st.sampled_from(list(ACTIONS)))
    kind = ACTIONS[name]
    slots = draw(st.sampled_from(kind.slots(cfg)))
    ch = {}
    for c in kind.choices(cfg, pol):
        ch[c.name] = draw(st.booleans()) if c.sort == "bool" else draw(st.integers(0, 4))
    return Step(name, slots, tuple(ch.items()))


def is_enabled(cfg, pol, s, step):
    return enabled(C, cfg, pol, s, step, dict(step.choices))
