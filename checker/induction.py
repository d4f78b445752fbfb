"""Parametric inductive proofs (Houdini over the obligations and strengthening invariants).

Configuration (pool size, cap, claim footprints and predicates, modes, durations, request
sizes) is symbolic and unbounded, constrained only by well-formedness; the number of claim and
request slots is fixed (3 and 3 by default).  Candidates are the strengthening invariants S1-S6
and the obligations O1-O10.  Initiation is one query per candidate; consecution is one query per
(action instance, candidate): Inv(s) & T_a(s, t) & not C(t).  A candidate that fails either is
dropped, with the action that broke it, and the rest re-checked until nothing changes: what is
left is inductive, so every obligation left is proved for all sizes.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import z3

from kvclaims.spec.algebra import SYMBOLIC as Z
from kvclaims.spec.obligations import CHECKED, well_formed
from kvclaims.spec.policy import Policy

from .symbolic import instances, sym_config, sym_initial, sym_state, transition

CANDIDATES = CHECKED


@dataclass
class QueryTime:
    candidate: str
    action: str      # "init" for initiation
    seconds: float
    result: str


@dataclass
class InductionResult:
    policy: str
    proved: List[str]
    dropped: Dict[str, str]          # candidate -> "init" or the action label that broke it
    unknown: Dict[str, str]          # candidate -> action label whose query was unknown
    queries: List[QueryTime] = field(default_factory=list)
    seconds: float = 0.0
    K: int = 3
    R: int = 3


def _check(solver: z3.Solver, goal) -> z3.CheckSatResult:
    solver.push()
    solver.add(z3.Not(goal))
    r = solver.check()
    solver.pop()
    return r


def prove(pol: Policy, K: int = 3, R: int = 3, timeout_ms: int = 20000,
          candidates: Optional[List[str]] = None) -> InductionResult:
    t0 = time.perf_counter()
    cand_ids = list(candidates or CANDIDATES)
    cfg = sym_config(K, R)
    wf = well_formed(Z, cfg)
    res = InductionResult(pol.name, [], {}, {}, K=K, R=R)
    active = []
    init = sym_initial(cfg)
    solver = z3.Solver()
    solver.set("timeout", timeout_ms)
    solver.add(wf)
    for cid in cand_ids:
        q0 = time.perf_counter()
        r = _check(solver, CANDIDATES[cid].holds(Z, cfg, pol, init))
        res.queries.append(QueryTime(cid, "init", time.perf_counter() - q0, str(r)))
        if r == z3.unsat:
            active.append(cid)
        elif r == z3.sat:
            res.dropped[cid] = "init"
        else:
            res.unknown[cid] = "init"

    s, t = sym_state(K, R, "s"), sym_state(K, R, "t")
    insts = instances(cfg)
    # Each instance's transition is built once; Houdini rounds reuse it.
    trans = {inst: transition(cfg, pol, s, t, inst, "ch")[0] for inst in insts}
    changed = True
    while changed:
        changed = False
        for inst in insts:
            solver = z3.Solver()
            solver.set("timeout", timeout_ms)
            solver.add(wf, trans[inst])
            solver.add(*[CANDIDATES[c].holds(Z, cfg, pol, s) for c in active])
            for cid in list(active):
                q0 = time.perf_counter()
                r = _check(solver, CANDIDATES[cid].holds(Z, cfg, pol, t))
                res.queries.append(QueryTime(cid, inst.label, time.perf_counter() - q0, str(r)))
                if r != z3.unsat:
                    active.remove(cid)
                    (res.dropped if r == z3.sat else res.unknown)[cid] = inst.label
                    changed = True
            if changed:
                break   # the assumptions shrank: restart the round with the smaller set
    res.proved = [c for c in active]
    res.seconds = time.perf_counter() - t0
    return res
