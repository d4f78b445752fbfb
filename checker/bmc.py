"""Bounded model checking (one incremental solver, one frame per depth, shortest first).

The configuration is symbolic, as in the proofs, so the counterexample found at depth k is the
shortest over every pool size and claim/request size with the given number of slots.  Each one
is turned into concrete steps and replayed through the concrete interpreter: a counterexample
the concrete spec does not reproduce is an internal error, never a verdict."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import z3

from kvclaims.spec.actions import Step
from kvclaims.spec.algebra import SYMBOLIC as Z
from kvclaims.spec.obligations import CHECKED, well_formed
from kvclaims.spec.policy import Policy
from kvclaims.spec.state import ClaimConfig, Config, RequestConfig, State, flat_fields

from .replay import ReplayError, replay
from .symbolic import instances, lift_config, sym_config, sym_initial, sym_state, transition


@dataclass
class Trace:
    """A concrete run found by the solver and confirmed by the concrete interpreter."""
    policy: str
    goal: str
    config: Config
    steps: List[Step]
    states: List[State]          # len(steps) + 1

    @property
    def depth(self) -> int:
        return len(self.steps)


def _value(m, x):
    x = m.eval(x, model_completion=True)
    return z3.is_true(x) if z3.is_bool(x) else x.as_long()


class Unrolling:
    """Initial state and k transitions over one solver; `extend` adds a frame."""

    def __init__(self, pol: Policy, K: int, R: int, timeout_ms: int,
                 config: Optional[Config] = None, start_free: bool = False):
        """start_free: the first frame is any state (the caller constrains it), not the
        initial one: used to prove a goal unreachable from every invariant state."""
        self.pol = pol
        self.cfg = lift_config(config) if config is not None else sym_config(K, R)
        self.insts = instances(self.cfg)
        self.solver = z3.Solver()
        self.solver.set("timeout", timeout_ms)
        self.solver.add(well_formed(Z, self.cfg))
        self.states = [sym_state(self.cfg.K, self.cfg.R, "s0") if start_free
                       else sym_initial(self.cfg)]
        self.sels: List[z3.ArithRef] = []
        self.choices: List[list] = []

    @property
    def depth(self) -> int:
        return len(self.sels)

    def extend(self):
        k = self.depth + 1
        s, t = self.states[-1], sym_state(self.cfg.K, self.cfg.R, f"s{k}")
        sel = z3.Int(f"act{k}")
        alts, step_ch = [], []
        for n, inst in enumerate(self.insts):
            f, ch = transition(self.cfg, self.pol, s, t, inst, f"d{k}")
            alts.append(z3.And(sel == n, f))
            step_ch.append(ch)
        self.solver.add(z3.Or(*alts))
        self.states.append(t)
        self.sels.append(sel)
        self.choices.append(step_ch)

    def last_action_is(self, action: str):
        """The last frame's step is an instance of `action`."""
        return z3.Or(*[self.sels[-1] == n for n, inst in enumerate(self.insts)
                       if inst.action == action])

    def check(self, goal) -> z3.CheckSatResult:
        self.solver.push()
        self.solver.add(goal)
        r = self.solver.check()
        self._model = self.solver.model() if r == z3.sat else None
        self.solver.pop()
        return r

    def trace(self, goal: str, violates: Optional[str] = None) -> Trace:
        """The model of the last sat check as a concrete trace, replayed and cross-checked
        state by state against the solver's own states."""
        m = self._model
        v = lambda x: _value(m, x)
        cfg = self.cfg
        ccfg = Config(usable=v(cfg.usable), cap=v(cfg.cap),
                      claims=tuple(ClaimConfig(**{f: v(getattr(cc, f)) for f in
                                                  ("footprint", "pred_start", "pred_len", "mode",
                                                   "owner", "identity", "duration")})
                                   for cc in cfg.claims),
                      requests=tuple(RequestConfig(need=v(r.need), identity=v(r.identity))
                                     for r in cfg.requests),
                      headroom=v(cfg.headroom), response_ticks=v(cfg.response_ticks))
        steps = []
        for sel, step_ch in zip(self.sels, self.choices):
            n = v(sel)
            inst = self.insts[n]
            steps.append(Step(inst.action, inst.slots,
                              tuple((c, v(x)) for c, x in step_ch[n].items())))
        states = replay(ccfg, self.pol, steps, violates=violates)
        for i, (a, st) in enumerate(zip(states, self.states)):
            if dict(flat_fields(a)) != {n: v(x) for n, x in flat_fields(st)}:
                raise ReplayError(f"{self.pol.name}/{goal}: concrete and symbolic states "
                                  f"differ after step {i}")
        return Trace(self.pol.name, goal, ccfg, steps, states)


@dataclass
class BmcResult:
    policy: str
    found: Dict[str, Trace] = field(default_factory=dict)
    bound: int = 0                                           # deepest frame searched
    unknown: Dict[str, str] = field(default_factory=dict)    # the solver gave up
    seconds: Dict[str, float] = field(default_factory=dict)


def bmc(pol: Policy, targets: List[str], K: int = 3, R: int = 3, max_depth: int = 8,
        timeout_ms: int = 60000) -> BmcResult:
    """Shortest violation of each target obligation, up to max_depth steps."""
    res = BmcResult(pol.name)
    u = Unrolling(pol, K, R, timeout_ms)
    remaining = list(targets)
    t0 = time.perf_counter()
    while True:
        for ob in list(remaining):
            r = u.check(z3.Not(CHECKED[ob].holds(Z, u.cfg, pol, u.states[-1])))
            if r == z3.sat:
                res.found[ob] = u.trace(ob, violates=ob)
            elif r == z3.unknown:
                res.unknown[ob] = f"solver gave up at depth {u.depth}: {u.solver.reason_unknown()}"
            if r != z3.unsat:
                res.seconds[ob] = time.perf_counter() - t0
                remaining.remove(ob)
        res.bound = u.depth
        if not remaining or u.depth >= max_depth:
            break
        u.extend()
    for ob in remaining:
        res.seconds[ob] = time.perf_counter() - t0
    return res


def reach(pol: Policy, goal_name: str, goal: Callable[[Unrolling], object], K: int = 3,
          R: int = 3, max_depth: int = 10, config: Optional[Config] = None,
          timeout_ms: int = 60000) -> Optional[Trace]:
    """Shortest run whose last frame satisfies `goal` (a "sometimes" property), or None if
    there is none within max_depth."""
    u = Unrolling(pol, K, R, timeout_ms, config=config)
    while u.depth < max_depth:
        u.extend()
        r = u.check(goal(u))
        if r == z3.sat:
            return u.trace(goal_name)
        if r == z3.unknown:
            raise TimeoutError(f"{goal_name}: solver gave up at depth {u.depth}")
    return None
