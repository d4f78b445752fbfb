"""z3 side of the spec: symbolic configurations, states, choices and transitions, built by
running the spec's own action definitions under the SYMBOLIC interpretation."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

import z3

from kvclaims.spec.actions import ACTIONS, Step, successor
from kvclaims.spec.algebra import SYMBOLIC as Z
from kvclaims.spec.state import (ClaimConfig, Config, RequestConfig, State, build_state,
                                 flat_fields, initial_state)


def sym_config(K: int, R: int, tag: str = "cfg") -> Config:
    I = lambda n: z3.Int(f"{tag}.{n}")
    return Config(
        usable=I("usable"), cap=I("cap"),
        claims=tuple(ClaimConfig(footprint=I(f"c{i}.footprint"), pred_start=I(f"c{i}.pred_start"),
                                 pred_len=I(f"c{i}.pred_len"), mode=I(f"c{i}.mode"),
                                 owner=I(f"c{i}.owner"), identity=I(f"c{i}.identity"),
                                 duration=I(f"c{i}.duration"))
                     for i in range(K)),
        requests=tuple(RequestConfig(need=I(f"r{j}.need"), identity=I(f"r{j}.identity"))
                       for j in range(R)),
        headroom=I("headroom"), response_ticks=I("response_ticks"))


def sym_state(K: int, R: int, tag: str) -> State:
    mk = lambda n, kind: z3.Bool(f"{tag}.{n}") if kind == "bool" else z3.Int(f"{tag}.{n}")
    return build_state(K, R, mk)


def lift_config(cfg: Config) -> Config:
    iv = lambda v: z3.IntVal(int(v))
    return Config(usable=iv(cfg.usable), cap=iv(cfg.cap),
                  claims=tuple(ClaimConfig(*(iv(getattr(cc, f)) for f in
                                             ("footprint", "pred_start", "pred_len", "mode",
                                              "owner", "identity", "duration")))
                               for cc in cfg.claims),
                  requests=tuple(RequestConfig(iv(r.need), iv(r.identity)) for r in cfg.requests),
                  headroom=iv(cfg.headroom), response_ticks=iv(cfg.response_ticks))


def states_equal(a: State, b: State):
    return z3.And(*[x == y for (_, x), (_, y) in zip(flat_fields(a), flat_fields(b))])


@dataclass(frozen=True)
class Instance:
    """An action with its slots fixed: the unit of one consecution query."""
    action: str
    slots: Tuple[int, ...]

    @property
    def label(self) -> str:
        return f"{self.action}{list(self.slots)}"


def instances(cfg: Config) -> List[Instance]:
    return [Instance(name, slots) for name, kind in ACTIONS.items() for slots in kind.slots(cfg)]


def sym_choices(cfg, pol, inst: Instance, tag: str) -> Dict[str, z3.ExprRef]:
    out = {}
    for c in ACTIONS[inst.action].choices(cfg, pol):
        n = f"{tag}.{inst.action}{''.join(map(str, inst.slots))}.{c.name}"
        out[c.name] = z3.Bool(n) if c.sort == "bool" else z3.Int(n)
    return out


def transition(cfg, pol, s: State, t: State, inst: Instance, tag: str):
    """guard(s) and t = effect(s), for one action instance; returns (formula, choices)."""
    ch = sym_choices(cfg, pol, inst, tag)
    kind = ACTIONS[inst.action]
    g = kind.guard(Z, cfg, pol, s, inst.slots, ch)
    s2, _ = successor(Z, cfg, pol, s, Step(inst.action, inst.slots), choices=ch)
    return z3.And(g, states_equal(t, s2)), ch


def sym_initial(cfg: Config) -> State:
    return lift_state(initial_state(cfg))


def lift_state(s: State) -> State:
    """Every field as a z3 term: Python values become z3 values, terms stay (a concrete state,
    or initial_state over a symbolic config)."""
    K, R = len(s.claims), len(s.requests)
    vals = dict(flat_fields(s))

    def v(n, kind):
        x = vals[n]
        if isinstance(x, z3.ExprRef):
            return x
        return z3.BoolVal(bool(x)) if kind == "bool" else z3.IntVal(int(x))
    return build_state(K, R, v)
