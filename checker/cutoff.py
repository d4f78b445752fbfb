"""Proofs for any number of claims and requests: a cutoff model with distinguished slots and an
abstract rest whose aggregate counts are symbolic integers (compositional model checking in
the style of McMillan's CMP; docs in README.md, "What is proved").

The model.  Two distinguished claims and two distinguished requests are kept whole (every
field symbolic, as in the 3+3 proofs).  All other claims, however many, are the *rest*, kept
only as the sums the actions and obligations read: `xp` protected resident blocks, `fp`
footprint of protecting claims on record, `xu` other resident blocks; all other requests as
`live`, their live blocks.  The rest enters the spec's own code as three stand-in slots
(`rest_slots`): a protecting claim holding xp of fp blocks, an unclaimed object holding xu
blocks, a running request holding `live` blocks, so the spec's sums over slots are the sums
over all claims and requests.  They never act; after each step they are rebuilt from the new
aggregates (the relation `rest_step`), so their other fields carry nothing.

Why two of each: an obligation is a conjunction over slots, and by symmetry it is enough to
show it for one slot (slot 0) while any other slot (slot 1, standing for any one of the rest)
acts, or slot 0 acts itself.  Consecution is checked for every candidate on both
distinguished slots under every action of either, starting from any pre-state in which they
and the rest's aggregates satisfy the candidates.

Assumptions, each machine-checked here; the proof is reported only when all hold:
  A0 symmetry: exchanging two claims (or two requests) maps every step to the step of the
     exchanged action, up to a renumbering of events (A3): so slot 1 stands for any claim.
  A1 locality: an action on slot 0 (or request 0) reads another claim or request only through
     the aggregates (resident, protected resident, protecting footprint; live blocks):
     replacing claim 1 by any claim with the same aggregates, and request 1 by the stand-in
     running request with its live blocks, changes neither the guard (request: only weakens
     it) nor anything the step writes outside them; nor does merging two claims into one
     holding both's sums (and two requests into one stand-in): it reads totals only, which
     is what the stand-ins hold.
  A2 rest steps: what an action on slot 0 does to another claim or request, summed over the
     rest, is within `rest_step`: admit only takes unprotected blocks of the rest, tick may
     only end protection (expiry), everything else leaves the rest alone; and `rest_wf` is a
     sum of facts true of each claim.
  A3 sequence numbers: the rest's events only put gaps between sequence numbers (and an
     exchange of claims changes which claim's event comes first in a step); every candidate
     is invariant under a renumbering that keeps the order of each claim's own numbers and
     which are at most the current one (`order_iso`), and the actions only test sequence
     numbers against 0 (spec/actions.py is read for that), while each event gets a number
     above all earlier ones.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import z3

from kvclaims.spec.actions import ACTIONS, Step, successor
from kvclaims.spec.algebra import SYMBOLIC as Z
from kvclaims.spec.obligations import CHECKED, config_errors
from kvclaims.spec.policy import Policy
from kvclaims.spec.state import (ClaimConfig, ClaimState, Config, RequestConfig, RequestState,
                                 State, flat_fields, initial_state, protected_now, replace_claim,
                                 replace_request, resident, responsible)
from kvclaims.spec.vocab import ClaimStatus as CS, Mode, PROTECTED_MODES, RequestStatus as RS

from .induction import InductionResult, QueryTime, conjunction, consecution
from .symbolic import Instance, instances, lift_state, sym_config, sym_state

KD, RD = 2, 2                    # distinguished claim and request slots
LP, LU, LR = KD, KD + 1, RD      # the rest's stand-in slots
SEQ_FIELDS = ("acc_seq", "mat_seq", "end_seq", "loss_seq")
# actions that touch every claim or request at once (the others touch only their own slots)
GLOBAL_ACTIONS = ("admit", "tick")


@dataclass(frozen=True)
class Rest:
    xp: z3.ArithRef
    fp: z3.ArithRef
    xu: z3.ArithRef
    live: z3.ArithRef


def rest_vars(tag: str) -> Rest:
    return Rest(*(z3.Int(f"{tag}.rest.{n}") for n in ("xp", "fp", "xu", "live")))


def rest_wf(r: Rest, s: State):
    """What any set of claims and requests satisfying S2 sums to; a protecting claim on
    record has an acceptance event (sequence number >= 1)."""
    return z3.And(r.xp >= 0, r.fp >= r.xp, r.xu >= 0, r.live >= 0,
                  z3.Implies(r.fp > 0, s.seq >= 1))


def rest_slots(r: Rest) -> Tuple[Tuple[ClaimConfig, ClaimState], Tuple[ClaimConfig, ClaimState],
                                Tuple[RequestConfig, RequestState]]:
    """The stand-in slots: a hard claim on record holding xp of fp blocks (its predicate lies
    past its footprint, so it is neither materialized nor harmable), an unclaimed object of xu
    blocks, a request running with `live` blocks (none when live is 0)."""
    on = r.fp > 0
    status = z3.If(on, int(CS.ACCEPTED), int(CS.NONE))
    p_cfg = ClaimConfig(footprint=r.fp, pred_start=r.fp, pred_len=z3.IntVal(1),
                        mode=z3.IntVal(int(Mode.HARD_PROTECTED)), owner=z3.IntVal(0),
                        identity=z3.IntVal(0), duration=z3.IntVal(0))
    u_cfg = replace(p_cfg, footprint=r.xu, pred_start=r.xu,
                    mode=z3.IntVal(int(Mode.SOFT_PRIORITY)))
    zero, no = z3.IntVal(0), z3.BoolVal(False)
    blank = ClaimState(lo=zero, hi=zero, status=z3.IntVal(int(CS.NONE)), acc_clock=zero,
                       acc_seq=zero, mat_seq=zero, end_seq=zero, loss_seq=zero,
                       victim_protected=no, harm_unclaimed=no, nonowner_change=no,
                       last_event=z3.IntVal(int(CS.NONE)))
    p = replace(blank, hi=r.xp, status=status, last_event=status, acc_seq=z3.If(on, 1, 0))
    u = replace(blank, hi=r.xu)
    run = r.live > 0
    rstatus = z3.If(run, int(RS.RUNNING), int(RS.NONE))
    req = RequestState(status=rstatus, live=r.live, admit=z3.BoolVal(True),
                       reported_need=z3.IntVal(-1), named=(no,) * (KD + 2),
                       blocking=(no,) * (KD + 2), last_event=rstatus, waited=zero,
                       spurious=no, misreported=no)
    return (p_cfg, p), (u_cfg, u), (RequestConfig(need=r.live, identity=zero), req)


def with_rest(cfg: Config, s: State, r: Rest) -> Tuple[Config, State]:
    """Config and state of the cutoff model: the distinguished slots of cfg/s, the rest's
    stand-ins in slots LP, LU (claims) and LR (request)."""
    (pc, p), (uc, u), (rc, rq) = rest_slots(r)
    claims = list(cfg.claims[:KD]) + [pc, uc]
    reqs = list(cfg.requests[:RD]) + [rc]
    cfg2 = replace(cfg, claims=tuple(claims), requests=tuple(reqs))
    s2 = replace(s, claims=tuple(s.claims[:KD]) + (p, u), requests=tuple(s.requests[:RD]) + (rq,))
    return cfg2, s2


def dist_config(cfg: Config) -> Config:
    return replace(cfg, claims=cfg.claims[:KD], requests=cfg.requests[:RD])


def rest_step(action: str, r: Rest, after: State, r2: Rest):
    """How the rest's aggregates may change in one step (A2 shows each is what the spec does
    to any one other claim, summed): admit takes blocks from the unprotected part (the spec's
    own victim choice on the stand-ins, forced off protected blocks by its guard); tick may
    expire claims (protection and footprint shrink, residency moves to the unprotected part);
    nothing else changes the rest."""
    same_live = r2.live == r.live
    if action == "admit":
        return z3.And(same_live, r2.fp == r.fp, r2.xp == resident(after.claims[LP]),
                      r2.xu == resident(after.claims[LU]))
    if action == "tick":
        return z3.And(same_live, r2.xp >= 0, r2.xp <= r.xp, r2.xp + r2.xu == r.xp + r.xu,
                      r2.fp <= r.fp, r2.fp - r2.xp <= r.fp - r.xp, r2.xp <= r2.fp)
    return z3.And(same_live, r2.xp == r.xp, r2.fp == r.fp, r2.xu == r.xu)


def _step(cfg, pol, s, inst: Instance, tag):
    ch = {c.name: (z3.Bool if c.sort == "bool" else z3.Int)(f"{tag}.{c.name}")
          for c in ACTIONS[inst.action].choices(cfg, pol)}
    return (*_step_with(cfg, pol, s, inst, ch), ch)


def _eq_dist(t: State, s2: State, delta):
    """t equals s2 on the distinguished slots and globals; t.seq = s2.seq + delta (the rest's
    events, A3)."""
    out = []
    for (n, x), (_, y) in zip(flat_fields(t), flat_fields(s2)):
        if n == "seq":
            out.append(x == y + delta)
        elif _distinguished(n):
            out.append(x == y)
    return z3.And(*out)


def _distinguished(name: str) -> bool:
    m = re.match(r"(claims|requests)\[(\d+)\]", name)
    if not m:
        return True
    return int(m.group(2)) < (KD if m.group(1) == "claims" else RD)


# --- the aggregates a claim or request contributes (A1, A2) ----------------------------------

def claim_sums(cfg: Config, s: State, i: int):
    """(resident, protected resident, protecting footprint) of claim i: all the rest is."""
    cc, c = cfg.claims[i], s.claims[i]
    prot = protected_now(Z, s.clock, cc, c)
    on = z3.And(responsible(Z, c), Z.In(cc.mode, PROTECTED_MODES))
    return resident(c), z3.If(prot, resident(c), 0), z3.If(on, cc.footprint, 0)


# --- A3: sequence numbers are only compared ---------------------------------------------------

SPEC_ACTIONS = Path(__file__).resolve().parent.parent / "spec" / "actions.py"
# every read of a sequence-number field in the actions: a test against 0, or an assignment of
# an event's number (a seq the event log hands out); nothing adds to or compares two of them
_SEQ_USE = re.compile(r"\b(\w+)\.(acc_seq|mat_seq|end_seq|loss_seq)\b([^\n]{0,12})")
_SEQ_OK = re.compile(r"^\s*(> 0|== 0)")


def seq_uses_ok() -> Optional[str]:
    """None when spec/actions.py reads sequence numbers only as tests against 0; else the
    first offending line."""
    for n, line in enumerate(SPEC_ACTIONS.read_text().splitlines(), 1):
        for m in _SEQ_USE.finditer(line):
            rest = m.group(3)
            if _SEQ_OK.match(rest) or rest.startswith(")") or rest.startswith(","):
                continue
            return f"spec/actions.py:{n}: {line.strip()}"
    return None


def order_iso(a: State, b: State):
    """b's sequence numbers are a's renumbered, keeping 0, signs, the order among each claim's
    own numbers, and which of them are at most the current number; the order between two
    claims' numbers may change, and how far below the current number they lie: that is all
    the rest's events and the exchange of two claims (A0) do."""
    out = [(a.seq == 0) == (b.seq == 0), (a.seq > 0) == (b.seq > 0)]
    for c, d in zip(a.claims, b.claims):
        xs = [(getattr(c, f), getattr(d, f)) for f in SEQ_FIELDS]
        for i, (x, y) in enumerate(xs):
            out += [(x == 0) == (y == 0), (x > 0) == (y > 0), (x <= a.seq) == (y <= b.seq)]
            for u, v in xs[i + 1:]:
                out += [(x < u) == (y < v), (x == u) == (y == v)]
    return z3.And(*out)


def renumbered(s: State, tag: str) -> State:
    """s with fresh sequence-number fields (constrained by order_iso)."""
    claims = tuple(replace(c, **{f: z3.Int(f"{tag}.c{i}.{f}") for f in SEQ_FIELDS})
                   for i, c in enumerate(s.claims))
    return replace(s, seq=z3.Int(f"{tag}.seq"), claims=claims)


# --- the proof --------------------------------------------------------------------------------

@dataclass
class CutoffResult:
    """Houdini in the cutoff model (`induction`), and each assumption's failures (empty: holds)."""
    induction: InductionResult
    assumptions: Dict[str, List[str]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def sound(self) -> bool:
        return not any(self.assumptions.values())

    @property
    def proved(self) -> List[str]:
        return self.induction.proved if self.sound else []


def prove_any(pol: Policy, timeout_ms: int = 20000,
              candidates: Optional[List[str]] = None) -> CutoffResult:
    t0 = time.perf_counter()
    ids = list(candidates or CHECKED)
    res = InductionResult(pol.name, [], {}, {}, K=KD, R=RD)
    full = sym_config(KD + 2, RD + 1)
    rs, rt = rest_vars("s"), rest_vars("t")
    s0, t0_ = sym_state(KD + 2, RD + 1, "s"), sym_state(KD + 2, RD + 1, "t")
    cfg_s, s = with_rest(full, s0, rs)
    cfg_t, t = with_rest(full, t0_, rt)
    wf = z3.And(*(c for c, _ in config_errors(Z, dist_config(full))), rest_wf(rs, s))

    # initiation: no claim or request has done anything, the rest included
    zero = Rest(*(z3.IntVal(0),) * 4)
    cfg_0, init = with_rest(full, lift_state(initial_state(full)), zero)
    active = []
    for cid in ids:
        q0 = time.perf_counter()
        r = _valid(CHECKED[cid].holds(Z, cfg_0, pol, init), wf, timeout_ms)
        res.queries.append(QueryTime(cid, "init", time.perf_counter() - q0, str(r)))
        if r == z3.unsat:
            active.append(cid)
        else:
            (res.dropped if r == z3.sat else res.unknown)[cid] = "init"

    pre = {c: CHECKED[c].holds(Z, cfg_s, pol, s) for c in active}
    post = {c: CHECKED[c].holds(Z, cfg_t, pol, t) for c in active}
    trans = {}
    delta = z3.Int("rest.events")
    for inst in instances(dist_config(full)):
        g, s2, _ = _step(cfg_s, pol, s, inst, f"ch.{inst.label}")
        trans[inst.label] = z3.And(g, _eq_dist(t, s2, delta), delta >= 0,
                                   rest_step(inst.action, rs, s2, rt))
    consecution(res, active, pre, post, wf, trans, timeout_ms)

    out = CutoffResult(res)
    out.assumptions = check_assumptions(pol, res.proved, timeout_ms)
    out.seconds = res.seconds = time.perf_counter() - t0
    return out


def _valid(goal, base, timeout_ms) -> z3.CheckSatResult:
    """unsat: goal holds wherever base does."""
    return _refute(goal, base, timeout_ms)[0]


def _refute(goal, base, timeout_ms):
    """(result, model or None) of the search for a state where base holds and goal not."""
    sv = z3.Solver()
    sv.set("timeout", timeout_ms)
    sv.add(base, z3.Not(goal))
    r = sv.check()
    return r, (sv.model() if r == z3.sat else None)


def _failing(items, base, timeout_ms: int) -> List[str]:
    """items: (goal, describe(model) -> str).  One query asks whether every goal holds where
    base does; only if not is each asked alone, to say which fail (and why)."""
    if not items or _valid(z3.And(*(g for g, _ in items)), base, timeout_ms) == z3.unsat:
        return []
    out = []
    for goal, describe in items:
        r, m = _refute(goal, base, timeout_ms)
        if r != z3.unsat:
            out.append(describe(m))
    return out


def check_assumptions(pol: Policy, proved: List[str], timeout_ms: int) -> Dict[str, List[str]]:
    """A0-A3; A1 and A2 over a 3-claim, 2-request model (slot 0 acts, claim 1 and request 1
    are another claim and request, claim 2 the rest); each entry a list of failures."""
    K, R = KD + 1, RD + 1
    cfg = sym_config(K, R, "a")
    s = sym_state(K, R, "a")
    wf = z3.And(*(c for c, _ in config_errors(Z, cfg)))
    inv = conjunction(cfg, pol, s, proved)
    # s_alt: claim 1 replaced by another claim with the same aggregates, request 1 by the
    # stand-in running request with the same live blocks
    alt_cfg_c = sym_config(K, R, "b").claims[1]
    alt_c = sym_state(K, R, "b").claims[1]
    cfg_altc = replace(cfg, claims=cfg.claims[:1] + (alt_cfg_c,) + cfg.claims[2:])
    s_altc = replace_claim(s, 1, alt_c)
    (_, _), (_, _), (stand_cfg, stand_req) = rest_slots(
        Rest(z3.IntVal(0), z3.IntVal(0), z3.IntVal(0), s.requests[1].live))
    stand_req = replace(stand_req, named=(z3.BoolVal(False),) * K,
                        blocking=(z3.BoolVal(False),) * K)
    cfg_alt = replace(cfg_altc, requests=cfg.requests[:1] + (stand_cfg,) + cfg.requests[2:])
    s_alt = replace_request(s_altc, 1, stand_req)
    alt_ok = z3.And(*(c for c, _ in config_errors(Z, cfg_altc)),
                    *(CHECKED[c].holds(Z, cfg_altc, pol, s_altc) for c in proved),
                    *(a == b for a, b in zip(claim_sums(cfg, s, 1),
                                             claim_sums(cfg_altc, s_altc, 1))))
    # s_merged: claims 1 and 2 merged into one claim holding both's sums (and an empty slot),
    # requests 1 and 2 into one stand-in holding both's live blocks: the step must not tell,
    # so it reads the others through totals only (the stand-ins hold totals of many)
    m_cfg_c, m_c = sym_config(K, R, "m").claims[1], sym_state(K, R, "m").claims[1]
    (_, _), (e_cfg, e_c), _ = rest_slots(Rest(*(z3.IntVal(0),) * 4))
    cfg_mc = replace(cfg, claims=cfg.claims[:1] + (m_cfg_c, e_cfg))
    s_mc = replace(replace_claim(replace_claim(s, 1, m_c), 2, e_c))
    two = [rest_slots(Rest(z3.IntVal(0), z3.IntVal(0), z3.IntVal(0), x))[2]
           for x in (s.requests[1].live + s.requests[2].live, z3.IntVal(0))]
    two = [(c, replace(r, named=(z3.BoolVal(False),) * K, blocking=(z3.BoolVal(False),) * K))
           for c, r in two]
    cfg_m = replace(cfg_mc, requests=cfg.requests[:1] + tuple(c for c, _ in two))
    s_m = replace(s_mc, requests=s.requests[:1] + tuple(r for _, r in two))
    sums = [claim_sums(cfg, s, i) for i in (1, 2)]
    m_ok = z3.And(*(c for c, _ in config_errors(Z, replace(cfg_mc, claims=cfg_mc.claims[:2]))),
                  *(CHECKED[c].holds(Z, replace(cfg_mc, claims=cfg_mc.claims[:2]), pol,
                                     replace(s, claims=s_mc.claims[:2],
                                             requests=tuple(replace(r, named=r.named[:2],
                                                                    blocking=r.blocking[:2])
                                                            for r in s.requests)))
                    for c in proved),
                  *(m == a + b for m, a, b in zip(claim_sums(cfg_mc, s_mc, 1), *sums)))
    one = replace(cfg, claims=cfg.claims[:1], requests=cfg.requests[:1])
    res0, prot0, fp0 = claim_sums(cfg, s, 1)
    a1, a1m, a2 = [], [], []
    for inst in instances(one):
        g, s2, ch = _step(cfg, pol, s, inst, "ch")
        gm, sm = _step_with(cfg_m, pol, s_m, inst, _merged_choices(ch))
        vals, merged = dict(flat_fields(s2)), dict(flat_fields(sm))
        same = [n for n, _ in flat_fields(s2) if _kept(n, inst.action)]
        # a step touching every claim emits one event per claim it touches: merged claims
        # emit fewer, so slot 0's event numbers may shift, keeping their order (A3)
        renum = True
        if inst.action in GLOBAL_ACTIONS:
            same = [n for n in same if not n.endswith(SEQ_FIELDS)]
            renum = order_iso(replace(s2, claims=s2.claims[:1]), replace(sm, claims=sm.claims[:1]))
        a1m.append((z3.Implies(m_ok, z3.And(z3.Implies(g, gm), z3.Implies(
            z3.And(g, gm), z3.And(renum, *(vals[n] == merged[n] for n in same))))),
            lambda m, lab=inst.label, g=g, gm=gm, same=same, vals=vals, merged=merged:
            f"{lab} reads {_what_differs(m, g, gm, same, vals, merged)} (beyond totals)"))
        ga, sa, _ = _step(cfg_alt, pol, s_alt, inst, "ch")
        # A1: the guard no stronger for another claim with the same sums or for the stand-in
        # request; the same writes on slot 0, request 0 and the globals
        same = [n for n, _ in flat_fields(s2) if _kept(n, inst.action)]
        vals, alts = dict(flat_fields(s2)), dict(flat_fields(sa))
        a1.append((z3.And(z3.Implies(g, ga), z3.Implies(
            z3.And(g, ga), z3.And(*(vals[n] == alts[n] for n in same)))),
            lambda m, lab=inst.label, g=g, ga=ga, same=same, vals=vals, alts=alts:
            f"{lab} reads {_what_differs(m, g, ga, same, vals, alts)}"))
        # A2: what the step does to claim 1 and request 1 is within rest_step, summed
        res1, prot1, fp1 = claim_sums(cfg, s2, 1)
        if inst.action == "admit":
            ok = z3.And(prot1 == prot0, fp1 == fp0, res1 <= res0)
        elif inst.action == "tick":
            ok = z3.And(res1 == res0, prot1 >= 0, prot1 <= prot0, fp1 <= fp0,
                        fp1 - prot1 <= fp0 - prot0, prot1 <= fp1)
        else:
            ok = z3.And(res1 == res0, prot1 == prot0, fp1 == fp0)
        ok = z3.And(ok, s2.requests[1].live == s.requests[1].live)
        a2.append((z3.Implies(g, ok), lambda m, lab=inst.label, s2=s2:
                   f"{lab} changes another claim or request beyond the rest's step"
                   + (f" ({_show(m, s, s2)})" if m else "")))
    # rest_wf: sums of what each claim satisfies
    a2.append((z3.And(prot0 >= 0, prot0 <= fp0, prot0 <= res0, res0 >= 0,
                      z3.Implies(fp0 > 0, s.seq >= 1), s.requests[1].live >= 0),
               lambda m: "rest_wf is not a sum of per-claim facts"))
    fails = {"A0": check_symmetry(pol, proved, timeout_ms),
             "A1": _failing(a1, z3.And(wf, inv, alt_ok), timeout_ms)
             + _failing(a1m, z3.And(wf, inv), timeout_ms),
             "A2": _failing(a2, z3.And(wf, inv), timeout_ms)}
    where = seq_uses_ok()
    s3 = renumbered(s, "iso")
    fails["A3"] = ([where] if where else []) + _failing(
        [(z3.Implies(z3.And(order_iso(s, s3), CHECKED[c].holds(Z, cfg, pol, s)),
                     CHECKED[c].holds(Z, cfg, pol, s3)), lambda m, c=c: c) for c in proved],
        wf, timeout_ms)
    return fails


def _merged_choices(ch: Dict[str, z3.ExprRef]) -> Dict[str, z3.ExprRef]:
    """Victim choices after merging claims 1 and 2 into slot 1: what was taken of either is
    taken of the merged claim, nothing of the empty slot."""
    out = dict(ch)
    if "take[2]" in ch:
        out["take[1]"] = ch["take[1]"] + ch["take[2]"]
        out["take[2]"] = z3.IntVal(0)
        out["head[2]"] = z3.BoolVal(False)
    return out


def _what_differs(m, g, ga, names, vals, alts) -> str:
    """The first thing a counterexample to A1 shows: the guard, or a field written."""
    if m is None:
        return "? (solver gave up)"
    if z3.is_true(m.eval(g, True)) and not z3.is_true(m.eval(ga, True)):
        return "another claim or request in its guard"
    for n in names:
        if not z3.is_true(m.eval(vals[n] == alts[n], True)):
            return f"another claim or request to write {n}"
    return "?"


def _show(m, s, s2) -> str:
    out = []
    for (n, a), (_, b) in zip(flat_fields(s), flat_fields(s2)):
        if n.startswith(("claims[1]", "requests[1]")):
            x, y = m.eval(a, True), m.eval(b, True)
            if not z3.is_true(z3.simplify(x == y)):
                out.append(f"{n} {x}->{y}")
    return ", ".join(out) or "its sums"


def _swap(xs, a=0, b=1):
    xs = list(xs)
    xs[a], xs[b] = xs[b], xs[a]
    return tuple(xs)


def _swapped(cfg: Config, s: State, claims: bool):
    """cfg and s with claims 0 and 1 exchanged (claims true) or requests 0 and 1."""
    if claims:
        reqs = tuple(replace(r, named=_swap(r.named), blocking=_swap(r.blocking))
                     for r in s.requests)
        return (replace(cfg, claims=_swap(cfg.claims)),
                replace(s, claims=_swap(s.claims), requests=reqs))
    return replace(cfg, requests=_swap(cfg.requests)), replace(s, requests=_swap(s.requests))


def _swap_slots(inst: Instance, claims: bool) -> Instance:
    """The instance acting on the exchanged slots (pairs are (request, claim))."""
    def sw(x):
        return 1 - x if x in (0, 1) else x
    if not inst.slots:
        return inst
    if len(inst.slots) == 2:
        j, i = inst.slots
        return Instance(inst.action, (j, sw(i)) if claims else (sw(j), i))
    on_claim = len(ACTIONS[inst.action].slots(sym_config(2, 1))) == 2
    return Instance(inst.action, (sw(inst.slots[0]),) if on_claim == claims else inst.slots)


def _swap_choices(ch: Dict[str, z3.ExprRef], claims: bool) -> Dict[str, z3.ExprRef]:
    if not claims:
        return ch
    out = dict(ch)
    for n in ch:
        m = re.match(r"(\w+)\[([01])\]$", n)
        if m:
            out[n] = ch[f"{m.group(1)}[{1 - int(m.group(2))}]"]
    return out


def check_symmetry(pol: Policy, proved: List[str], timeout_ms: int) -> List[str]:
    """A0 over a 2-claim, 2-request model: for each action instance `a` and each exchange σ
    (of the claims, or of the requests), a step of σ(a) from s is the σ-image of a step of a
    from σ(s) with σ(choices): same guard, same fields, sequence numbers as `order_iso` allows.
    σ is an involution, so each unordered pair {a, σ(a)} is checked once."""
    cfg, s = sym_config(2, 2, "y"), sym_state(2, 2, "y")
    wf = z3.And(*(c for c, _ in config_errors(Z, cfg)),
                *(CHECKED[c].holds(Z, cfg, pol, s) for c in proved))
    seqs = {"seq"} | {f"claims[{i}].{f}" for i in range(2) for f in SEQ_FIELDS}
    items, seen = [], set()
    for claims in (True, False):
        cfg2, s2 = _swapped(cfg, s, claims)
        for inst in instances(cfg):
            other = _swap_slots(inst, claims)
            if (claims, other, inst) in seen:
                continue
            seen.add((claims, inst, other))
            g1, t1, ch = _step(cfg, pol, s, other, "ch")
            # the same choice variables, exchanged for the exchanged run
            g2, t2 = _step_with(cfg2, pol, s2, inst, _swap_choices(ch, claims))
            _, t2b = _swapped(cfg2, t2, claims)
            a, b = dict(flat_fields(t1)), dict(flat_fields(t2b))
            items.append((z3.And(g1 == g2, z3.Implies(g1, z3.And(
                *(a[n] == b[n] for n in a if n not in seqs), order_iso(t1, t2b)))),
                lambda m, x=inst.label, y=other.label, c=claims:
                f"{x} and {y} ({'claims' if c else 'requests'} exchanged)"))
    return _failing(items, wf, timeout_ms)


def _step_with(cfg, pol, s, inst: Instance, ch):
    g = ACTIONS[inst.action].guard(Z, cfg, pol, s, inst.slots, ch)
    s2, _ = successor(Z, cfg, pol, s, Step(inst.action, inst.slots), choices=ch)
    return g, s2


def _kept(name: str, action: str) -> bool:
    """Fields A1 compares: what the step writes on slot 0, request 0 (but its record of claim
    1, a per-pair field) and the globals; not the other claims and requests (the rest: A2), nor
    the event count of steps that touch every claim (A3's gaps)."""
    if name == "seq":
        return action not in GLOBAL_ACTIONS
    m = re.match(r"(claims|requests)\[(\d+)\]", name)
    if m and m.group(2) != "0":
        return False
    return not re.match(r"requests\[0\]\.(named|blocking)\[[1-9]", name)


__all__ = ["prove_any", "CutoffResult", "check_assumptions", "KD", "RD"]
