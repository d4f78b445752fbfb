"""The whole check: for each policy, Houdini induction, then BMC for what was not proved;
the seeded mutations; the non-vacuity goals.  Jobs run in worker processes (z3 contexts are
per process) and come back as plain data."""
from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from typing import List, Optional

from kvclaims.spec.obligations import CHECKED
from kvclaims.spec.policy import MUTATIONS, Policy, policy_by_name

from .bmc import Trace, bmc, reach
from .cutoff import CutoffResult, prove_any
from .induction import InductionResult, prove, seconds_per_candidate
from .sometimes import goals
from .unreachable import Unreachable, prove_unreachable


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
    slots: str = "3+3"           # "K+R" slots the verdict is for, or "any" (checker/cutoff.py)


@dataclass
class PolicyRun:
    policy: str
    verdicts: List[Verdict]
    induction: InductionResult
    seconds: float
    # the cutoff proof for any number of claims and requests (conformant policies only)
    any_verdicts: List[Verdict] = field(default_factory=list)
    cutoff: Optional[CutoffResult] = None


@dataclass
class SometimesRun:
    policy: str
    goal: str
    doc: str
    depth: Optional[int]         # None: not reached within the bound
    seconds: float
    trace: Optional[Trace] = None
    unreachable: Optional[Unreachable] = None   # a proof that no run reaches the goal

    @property
    def outcome(self):
        """The manifest's value: the shortest depth, "unreachable" (proved), or None (not
        reached within the bound: unknown)."""
        return "unreachable" if self.unreachable is not None else self.depth


@dataclass
class Settings:
    K: int = 3
    R: int = 3
    depth: int = 8
    # the seeded mutations' BMC bound: a mutation is killed by its shortest counterexamples
    # (every kill pinned in the manifest is at depth <= 6); the frames past that cost about
    # half of the check's CPU (719 s at 8, 350 s at 6) and only keep other obligations
    # "unknown" a little longer.  A kill deeper than this shows as a manifest mismatch.
    mutation_depth: int = 6
    timeout_s: float = 60.0
    obligations: List[str] = field(default_factory=lambda: list(CHECKED))
    # prove the conformant policies for any number of claims and requests too
    any_slots: bool = True


def any_verdicts(cut: CutoffResult, obligations: List[str]) -> List[Verdict]:
    """Rows with slots "any": proved when the cutoff model proves the candidate and every
    assumption of the argument holds; otherwise unknown, saying which assumption failed or
    which action broke the candidate (the K+R rows still stand)."""
    spent = seconds_per_candidate(cut.induction, obligations)
    broken = "; ".join(f"{a} fails: {', '.join(f)}" for a, f in cut.assumptions.items() if f)
    out = []
    for o in obligations:
        if o in cut.proved:
            out.append(Verdict(cut.induction.policy, o, "proved", True, spent.get(o, 0.0),
                               slots="any", note="inductive in the cutoff model (2 claims, 2 "
                                                 "requests, the rest as sums): any number"))
        else:
            why = broken or ("not inductive in the cutoff model: broken by "
                             f"{cut.induction.dropped.get(o) or cut.induction.unknown.get(o)}")
            out.append(Verdict(cut.induction.policy, o, "unknown", False, spent.get(o, 0.0),
                               slots="any", note=why))
    return out


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
    slots = f"{st.K}+{st.R}"
    for v in out:
        v.slots = slots
    return PolicyRun(pol.name, out, ind, time.perf_counter() - t0)


def check_sometimes(policy: str, goal_id: str, st: Settings) -> SometimesRun:
    g = next(g for g in goals(policy) if g.id == goal_id)
    t0 = time.perf_counter()
    pol = policy_by_name(policy)
    tr = reach(pol, g.id, g.goal, st.K, st.R,
               max_depth=max(st.depth, 10), config=g.config,
               timeout_ms=int(st.timeout_s * 1000))
    proof = None if tr is not None else prove_unreachable(
        pol, g.goal, st.K, st.R, g.config, int(st.timeout_s * 1000), g.lemma, g.lemma_doc)
    return SometimesRun(policy, g.id, g.doc, tr.depth if tr else None,
                        time.perf_counter() - t0, tr, proof)


def _policy_job(args):
    name, st = args
    return check_policy(policy_by_name(name), st)


def _cutoff_job(args):
    name, st = args
    return prove_any(policy_by_name(name), timeout_ms=int(st.timeout_s * 1000))


def _sometimes_job(args):
    policy, goal_id, st = args
    return check_sometimes(policy, goal_id, st)


def run_all(policies: List[str], mutations: List[str], sometimes_policies: List[str],
            st: Settings, jobs: int = 2):
    """Returns (policy runs, mutation runs, sometimes runs), each in a stable order."""
    mst = replace(st, depth=st.mutation_depth)
    pol_args = [(n, st) for n in policies] + [(n, mst) for n in mutations]
    cut_args = [(n, st) for n in policies if st.any_slots and policy_by_name(n).conformant]
    som_args = [(p, g.id, st) for p in sometimes_policies for g in goals(p)]
    if jobs <= 1:
        cr = [_cutoff_job(a) for a in cut_args]
        pr = [_policy_job(a) for a in pol_args]
        sr = [_sometimes_job(a) for a in som_args]
    else:
        with ProcessPoolExecutor(max_workers=jobs) as ex:
            # the cutoff proofs first: they are the longest single jobs
            fc = ex.map(_cutoff_job, cut_args)
            fp = ex.map(_policy_job, pol_args)
            fs = ex.map(_sometimes_job, som_args)
            cr, pr, sr = list(fc), list(fp), list(fs)
    cuts = {c.induction.policy: c for c in cr}
    for r in pr:
        if r.policy in cuts:
            r.cutoff = cuts[r.policy]
            r.any_verdicts = any_verdicts(r.cutoff, st.obligations)
    return pr[:len(policies)], pr[len(policies):], sr


__all__ = ["Settings", "Verdict", "PolicyRun", "SometimesRun", "run_all", "check_policy",
           "any_verdicts",
           "check_sometimes", "MUTATIONS"]
