"""The whole check: for each policy, Houdini induction, then BMC for what was not proved;
the seeded mutations; the non-vacuity goals.  Jobs run in worker processes (z3 contexts are
per process) and come back as plain data."""
from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import List, Optional

from kvclaims.spec.obligations import CHECKED
from kvclaims.spec.policy import MUTATIONS, Policy, policy_by_name

from .bmc import Trace, bmc, reach
from .induction import InductionResult, prove, seconds_per_candidate
from .sometimes import goals


@dataclass
class Verdict:
    policy: str
    obligation: str
    verdict: str                 # "proved" | "violated" | "unknown"
    parametric: bool
    seconds: float
    depth: Optional[int] = None
    trace: Optional[Trace] = None
    note: str = ""


@dataclass
class PolicyRun:
    policy: str
    verdicts: List[Verdict]
    induction: InductionResult
    seconds: float


@dataclass
class SometimesRun:
    policy: str
    goal: str
    doc: str
    depth: Optional[int]         # None: not reached within the bound
    seconds: float
    trace: Optional[Trace] = None


@dataclass
class Settings:
    K: int = 3
    R: int = 3
    depth: int = 8
    timeout_s: float = 60.0
    obligations: List[str] = field(default_factory=lambda: list(CHECKED))


def check_policy(pol: Policy, st: Settings) -> PolicyRun:
    t0 = time.perf_counter()
    ind = prove(pol, st.K, st.R, timeout_ms=int(st.timeout_s * 1000))
    spent = seconds_per_candidate(ind, st.obligations)
    todo = [o for o in st.obligations if o not in ind.proved]
    b = bmc(pol, todo, st.K, st.R, max_depth=st.depth, timeout_ms=int(st.timeout_s * 1000))
    out = []
    for o in st.obligations:
        if o in ind.proved:
            out.append(Verdict(pol.name, o, "proved", True, spent.get(o, 0.0),
                               note=f"inductive with the proved set for any sizes, {st.K} claims, "
                                    f"{st.R} requests"))
        elif o in b.found:
            tr = b.found[o]
            out.append(Verdict(pol.name, o, "violated", False, b.seconds[o], depth=tr.depth,
                               trace=tr, note=f"consecution broken by "
                                              f"{ind.dropped.get(o) or ind.unknown.get(o)}"))
        else:
            why = b.unknown.get(o) \
                or f"not inductive ({ind.dropped.get(o) or ind.unknown.get(o)})" \
                f" and no violation within {b.bound} steps"
            out.append(Verdict(pol.name, o, "unknown", False, b.seconds.get(o, 0.0), note=why))
    return PolicyRun(pol.name, out, ind, time.perf_counter() - t0)


def check_sometimes(policy: str, goal_id: str, st: Settings) -> SometimesRun:
    g = next(g for g in goals(policy) if g.id == goal_id)
    t0 = time.perf_counter()
    tr = reach(policy_by_name(policy), g.id, g.goal, st.K, st.R,
               max_depth=max(st.depth, 10), config=g.config,
               timeout_ms=int(st.timeout_s * 1000))
    return SometimesRun(policy, g.id, g.doc, tr.depth if tr else None,
                        time.perf_counter() - t0, tr)


def _policy_job(args):
    name, st = args
    return check_policy(policy_by_name(name), st)


def _sometimes_job(args):
    policy, goal_id, st = args
    return check_sometimes(policy, goal_id, st)


def run_all(policies: List[str], mutations: List[str], sometimes_policies: List[str],
            st: Settings, jobs: int = 2):
    """Returns (policy runs, mutation runs, sometimes runs), each in a stable order."""
    pol_args = [(n, st) for n in policies] + [(n, st) for n in mutations]
    som_args = [(p, g.id, st) for p in sometimes_policies for g in goals(p)]
    if jobs <= 1:
        pr = [_policy_job(a) for a in pol_args]
        sr = [_sometimes_job(a) for a in som_args]
    else:
        with ProcessPoolExecutor(max_workers=jobs) as ex:
            fp = ex.map(_policy_job, pol_args)
            fs = ex.map(_sometimes_job, som_args)
            pr, sr = list(fp), list(fs)
    return pr[:len(policies)], pr[len(policies):], sr


__all__ = ["Settings", "Verdict", "PolicyRun", "SometimesRun", "run_all", "check_policy",
           "check_sometimes", "MUTATIONS"]
