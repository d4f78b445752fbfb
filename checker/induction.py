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


def conjunction(cfg, pol: Policy, s, ids) -> z3.BoolRef:
    """The candidates `ids` (e.g. what Houdini proved) all hold in state s."""
    return z3.And(*(CANDIDATES[c].holds(Z, cfg, pol, s) for c in ids))


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
    # Terms are built once: each candidate over s and over t, each instance's transition;
    # Houdini rounds and every instance's query reuse them.
    pre = {c: CANDIDATES[c].holds(Z, cfg, pol, s) for c in active}
    post = {c: CANDIDATES[c].holds(Z, cfg, pol, t) for c in active}
    consecution(res, active, pre, post, wf,
                {inst: transition(cfg, pol, s, t, inst, "ch")[0] for inst in instances(cfg)},
                timeout_ms)
    res.seconds = time.perf_counter() - t0
    return res


def consecution(res: InductionResult, active: List[str], pre, post, base, trans,
                timeout_ms: int) -> None:
    """Houdini over `active` (shrunk in place; res.proved is what is left): for each
    transition, one query asks whether every active candidate survives it; only when one does
    not is each asked alone, to drop exactly the ones it breaks.  `base` holds in every query
    (well-formedness, and for the cutoff model the abstraction's side conditions)."""
    changed = True
    while changed:
        changed = False
        for label, tr in trans.items():
            solver = z3.Solver()
            solver.set("timeout", timeout_ms)
            solver.add(base, tr)
            solver.add(*[pre[c] for c in active])
            q0 = time.perf_counter()
            r = _check(solver, z3.And(*[post[c] for c in active]))
            res.queries.append(QueryTime("*", _label(label), time.perf_counter() - q0, str(r)))
            if r == z3.unsat:
                continue
            for cid in list(active):
                q0 = time.perf_counter()
                r = _check(solver, post[cid])
                res.queries.append(QueryTime(cid, _label(label), time.perf_counter() - q0,
                                             str(r)))
                if r != z3.unsat:
                    active.remove(cid)
                    (res.dropped if r == z3.sat else res.unknown)[cid] = _label(label)
                    changed = True
            if changed:
                break   # the assumptions shrank: restart the round with the smaller set
    res.proved = list(active)


def _label(x) -> str:
    return x if isinstance(x, str) else x.label


def seconds_per_candidate(res: InductionResult, ids: List[str]) -> Dict[str, float]:
    """Solver seconds charged to each candidate: its own queries, plus an equal share of the
    combined queries ("*") it took part in."""
    out = {c: 0.0 for c in ids}
    for q in res.queries:
        if q.candidate == "*":
            share = [c for c in ids if c in res.proved] or ids
            for c in share:
                out[c] += q.seconds / len(share)
        elif q.candidate in out:
            out[q.candidate] += q.seconds
    return out
