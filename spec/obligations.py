"""Obligations O1-O10 (docs/CONTRACT.md section 6) as predicates over a state and its ghost
history, the strengthening invariants that make them inductive, and configuration
well-formedness.  Each is written once against `ops`.

The spec's history obligations are stated over ghost fields the actions maintain:
sequence numbers of lifecycle events (O4, O9), the first loss of a claimed block (O4), whether a
protected block was ever an ordinary victim (O3), the observer's reconstruction (O6), the
claims a conflict event named against the ones that really blocked (O8).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict

from . import truth
from .policy import Policy
from .state import (Config, State, responsible, resident, overdue)
from .vocab import (ClaimStatus as CS, ENDED, ENDED_BY_RELEASE, Mode, PROTECTED_MODES,
                    Primitive, RequestStatus as RS, RESPONSIBLE)


@dataclass(frozen=True)
class Invariant:
    id: str
    title: str
    doc: str
    holds: Callable[..., object]     # (ops, cfg, pol, s) -> bool term


def _all(ops, xs):
    return ops.And(*list(xs))


# --- the obligations -------------------------------------------------------------------------

def o1(ops, cfg, pol, s):
    """No harm event for a claim that was not under responsibility when its object lost
    blocks, and none in the history of a claim never accepted."""
    return _all(ops, (ops.And(ops.Not(c.harm_unclaimed),
                              ops.Implies(c.last_event == int(CS.HARMED), c.acc_seq > 0))
                      for c in s.claims))


def o2(ops, cfg, pol, s):
    out = []
    for rc, r in zip(cfg.requests, s.requests):
        out.append(ops.Or(r.reported_need == -1, r.reported_need == rc.need))
        out.append(ops.Implies(r.status == int(RS.RUNNING), r.live == rc.need))
    return _all(ops, out)


def o3(ops, cfg, pol, s):
    return _all(ops, (ops.Not(c.victim_protected) for c in s.claims))


def o4(ops, cfg, pol, s):
    out = []
    for cc, c in zip(cfg.claims, s.claims):
        out.append(ops.Implies(
            ops.And(ops.In(cc.mode, PROTECTED_MODES), ops.In(c.status, ENDED_BY_RELEASE),
                    c.loss_seq > 0),
            c.end_seq < c.loss_seq))
    return _all(ops, out)


def o5(ops, cfg, pol, s):
    out = []
    for cc, c in zip(cfg.claims, s.claims):
        p = truth.predicate_true(ops, cc, c)
        out.append(ops.Implies(c.status == int(CS.MATERIALIZED), p))
        out.append(ops.Implies(c.status == int(CS.ACCEPTED), ops.Not(p)))
    return _all(ops, out)


def o6(ops, cfg, pol, s):
    out = []
    for cc, c in zip(cfg.claims, s.claims):
        out.append(c.last_event == c.status)
        out.append(ops.Implies(c.last_event == int(CS.MATERIALIZED),
                               truth.predicate_true(ops, cc, c)))
    for r in s.requests:
        out.append(r.last_event == r.status)
    return _all(ops, out)


def o7(ops, cfg, pol, s):
    if pol.primitive == Primitive.PIN:
        return True
    return _all(ops, (ops.Not(ops.And(responsible(ops, c), ops.In(cc.mode, PROTECTED_MODES)))
                      for cc, c in zip(cfg.claims, s.claims)))


def o8(ops, cfg, pol, s):
    out = []
    for r in s.requests:
        same = _all(ops, (n == b for n, b in zip(r.named, r.blocking)))
        out.append(ops.Implies(ops.In(r.status, (RS.DEFERRED, RS.REFUSED)), same))
    return _all(ops, out)


def o9(ops, cfg, pol, s):
    out = []
    for c in s.claims:
        out += [
            ops.Implies(c.mat_seq > 0, ops.And(c.acc_seq > 0, c.acc_seq < c.mat_seq)),
            ops.Implies(c.end_seq > 0, ops.And(c.acc_seq > 0, c.acc_seq < c.end_seq,
                                               ops.Or(c.mat_seq == 0, c.mat_seq < c.end_seq))),
            c.acc_seq <= s.seq, c.mat_seq <= s.seq, c.end_seq <= s.seq,
            ops.Implies(ops.In(c.status, ENDED + RESPONSIBLE), c.acc_seq > 0),
            ops.Implies(c.status == int(CS.MATERIALIZED), c.mat_seq > 0),
            ops.Implies(ops.In(c.status, ENDED), c.end_seq > 0),
        ]
    return _all(ops, out)


def o10(ops, cfg, pol, s):
    return ops.And(ops.Not(s.cross_identity_reuse),
                   *(ops.Not(c.nonowner_change) for c in s.claims))


def o11(ops, cfg, pol, s):
    return truth.reserved(ops, cfg, s) <= cfg.cap


def o12(ops, cfg, pol, s):
    return _all(ops, (ops.Implies(rc.need <= cfg.headroom,
                                  truth.protected_blocks(ops, cfg, s) + rc.need <= cfg.usable)
                      for rc in cfg.requests))


def o13(ops, cfg, pol, s):
    out = []
    for cc, c in zip(cfg.claims, s.claims):
        out += [ops.Implies(c.status == int(CS.DEMOTED), cc.mode == int(Mode.DEMOTABLE)),
                ops.Implies(c.status == int(CS.EXPIRED), cc.mode == int(Mode.EXPIRING)),
                ops.Implies(cc.mode == int(Mode.HARD_PROTECTED), c.status != int(CS.HARMED))]
    return _all(ops, out)


def o14(ops, cfg, pol, s):
    return _all(ops, (r.waited <= cfg.response_ticks for r in s.requests))


def o15(ops, cfg, pol, s):
    return _all(ops, (ops.Not(r.spurious) for r in s.requests))


def o16(ops, cfg, pol, s):
    return _all(ops, (ops.Not(r.misreported) for r in s.requests))


OBLIGATIONS: Dict[str, Invariant] = {o.id: o for o in (
    Invariant("O1", "no claim, no harm",
              "Harm is only ever reported for a claim under runtime responsibility; ordinary "
              "eviction of unclaimed or rejected state is never claim harm.", o1),
    Invariant("O2", "no-admit is not live bounding",
              "A running request holds all the live blocks it needs whatever its future-reuse "
              "admission, and a conflict event never reports fewer live blocks than needed.", o2),
    Invariant("O3", "explicit infeasibility",
              "No block of a claim recorded as protected (accepted or materialized, protecting "
              "mode) is ever an ordinary eviction victim: the runtime preserves, demotes first, "
              "or defers/refuses with the blocking claims and a feasibility verdict.", o3),
    Invariant("O4", "release before loss",
              "For a protecting claim that was demoted, expired or released, every loss of its "
              "blocks came after that event in the trace.", o4),
    Invariant("O5", "predicate, not block count",
              "A claim is on record as materialized exactly while its predicate over logical "
              "positions holds (accepted: not yet; materialized: still).", o5),
    Invariant("O6", "reconstruction",
              "The lifecycle an observer rebuilds from the events alone equals the runtime's, for "
              "every claim and request, and a claim it believes materialized really is.", o6),
    Invariant("O7", "capability honesty",
              "A runtime whose only primitive is eviction preference never holds a protecting "
              "claim as accepted: that lowering is unsound for hard claims.", o7),
    Invariant("O8", "attribution",
              "A deferral or refusal names exactly the claims whose protected blocks are resident "
              "when the request does not fit.", o8),
    Invariant("O9", "ordered lifecycle",
              "Per claim: accepted < materialized < end event, sequence numbers monotonic and "
              "consistent with the status on record.", o9),
    Invariant("O10", "isolation",
              "Only a claim's owner releases it, and no reuse crosses cache identities.", o10),
    # Issue 15: contract semantics the paper states in prose (sections 2, 4, 5) made checkable.
    Invariant("O11", "protected cap",
              "The footprint of the protecting claims on record never exceeds the acceptance "
              "cap.", o11),
    Invariant("O12", "active headroom",
              "A request needing at most the configured headroom is never infeasible, "
              "whatever claims were accepted (the cap leaves usable - cap >= headroom).", o12),
    Invariant("O13", "mode honesty",
              "Only demotable claims are demoted, only expiring ones expire; a hard_protected "
              "claim ends only by its owner's release, never by demotion or harm.", o13),
    Invariant("O14", "bounded response",
              "A deferred request the runtime can answer (it fits, or it is infeasible) is "
              "served or refused within response_ticks ticks.", o14),
    Invariant("O15", "no spurious refusal",
              "A request is deferred only in conflict (need > unprotected supply) and refused "
              "only when infeasible (protected + need > usable).", o15),
    Invariant("O16", "conflict content",
              "A conflict event's protected blocks, shortfall (protected + need - usable when "
              "positive) and feasibility verdict are the true ones; a claim past its duration "
              "is neither counted as protected nor named as blocking.", o16),
)}


# --- strengthening invariants: true, needed to make the obligations inductive ---------------

def s_pool(ops, cfg, pol, s):
    live = ops.Sum(r.live for r in s.requests)
    res = ops.Sum(resident(c) for c in s.claims)
    return ops.And(s.empty >= 0, s.cached >= 0, s.empty + s.cached + res + live == cfg.usable)


def s_shape(ops, cfg, pol, s):
    out = [s.seq >= 0, s.clock >= 0]
    for cc, c in zip(cfg.claims, s.claims):
        out += [c.lo >= 0, c.lo <= c.hi, c.hi <= cc.footprint]
    for rc, r in zip(cfg.requests, s.requests):
        out += [ops.Implies(r.status == int(RS.RUNNING), r.live == rc.need),
                ops.Implies(r.status != int(RS.RUNNING), r.live == 0)]
    return _all(ops, out)


def s_unaccepted(ops, cfg, pol, s):
    out = []
    for c in s.claims:
        out.append(ops.Implies(ops.In(c.status, (CS.NONE, CS.SUBMITTED, CS.REJECTED)),
                               ops.And(c.acc_seq == 0, c.mat_seq == 0, c.end_seq == 0,
                                       c.loss_seq == 0)))
        out.append(ops.Implies(c.status == int(CS.ACCEPTED), c.mat_seq == 0))
        out.append(ops.Implies(ops.In(c.status, RESPONSIBLE), c.end_seq == 0))
        out.append(ops.And(c.loss_seq >= 0, c.loss_seq <= s.seq,
                           ops.Implies(c.loss_seq > 0, c.acc_seq > 0)))
        out.append(ops.And(c.acc_clock >= 0, c.acc_clock <= s.clock))
    return _all(ops, out)


def s_protected_intact(ops, cfg, pol, s):
    """A protecting claim on record has lost nothing since acceptance."""
    return _all(ops, (ops.Implies(ops.And(responsible(ops, c), ops.In(cc.mode, PROTECTED_MODES)),
                                  c.loss_seq == 0)
                      for cc, c in zip(cfg.claims, s.claims)))


def s_not_overdue(ops, cfg, pol, s):
    """No expiring claim is still on record once its duration has elapsed."""
    return _all(ops, (ops.Implies(responsible(ops, c), ops.Not(overdue(ops, s.clock, cc, c)))
                      for cc, c in zip(cfg.claims, s.claims)))


def s_requests(ops, cfg, pol, s):
    out = []
    for rc, r in zip(cfg.requests, s.requests):
        out.append(ops.Implies(r.status == int(RS.NONE),
                               ops.And(r.reported_need == -1,
                                       *(ops.Not(n) for n in r.named),
                                       *(ops.Not(b) for b in r.blocking))))
        out.append(ops.Implies(ops.In(r.status, (RS.DEFERRED, RS.REFUSED)),
                               r.reported_need == rc.need))
    return _all(ops, out)


STRENGTHENING: Dict[str, Invariant] = {o.id: o for o in (
    Invariant("S1", "pool conservation",
              "empty + cached + resident + live = usable, none negative.", s_pool),
    Invariant("S2", "shape",
              "0 <= lo <= hi <= footprint; a running request holds exactly its need, any other "
              "request nothing.", s_shape),
    Invariant("S3", "history of unaccepted claims",
              "A claim never accepted has no lifecycle sequence numbers and no recorded loss; a "
              "claim on record has no end event; recorded losses and acceptance times are in the "
              "past.", s_unaccepted),
    Invariant("S4", "protected claims are intact",
              "A protecting claim under responsibility has lost no block since acceptance.",
              s_protected_intact),
    Invariant("S5", "no overdue claim on record",
              "An expiring claim under responsibility is within its duration.", s_not_overdue),
    Invariant("S6", "request records",
              "A request never deferred carries no conflict record; a deferred or refused one "
              "reports its full need.", s_requests),
)}


# Which strengthening invariants each obligation needs (a minimal support found by dropping
# them one at a time; tests/test_induction.py re-proves both facts).  O3, O4 and O9 are true
# but not inductive on their own:
#   O3 alone fails on admit: a claim on record might be overdue, so the time-aware allocator
#      could take its blocks; S5 (no overdue claim on record) and S3 rule that out.
#   O4 alone fails on admit: a protecting claim on record might already have lost a block; S4
#      (protected claims are intact) rules that out, itself resting on S3 and S5, and O9's
#      "end events are in the past" makes a later loss carry a larger sequence number.
#   O9 alone fails on accept: a claim not yet accepted might carry stale sequence numbers (S3).
#   O1's history half fails on admit without O9 (a materialized claim was accepted) and S3.
#   O12 (headroom) rests on O11 (cap) and S2 (resident <= footprint).
#   O13 needs O5: a materialized hard claim's predicate holds, so no allowed victim breaks it.
#   O14 and O15 compare the guards' helpers with spec/truth.py's formulas, equal only under
#      pool conservation (S1) and shape (S2).
SUPPORT = {
    "O1": ("S3", "O9"),
    "O3": ("S3", "S5"),
    "O4": ("S3", "S4", "S5", "O9"),
    "O9": ("S3",),
    "O12": ("S2", "O11"),
    "O13": ("O5",),
    "O14": ("S1", "S2"),
    "O15": ("S1", "S2"),
}


# --- configuration well-formedness -----------------------------------------------------------

def config_errors(ops, cfg: Config):
    """(condition, message) pairs; a configuration is well formed when all conditions hold."""
    out = [(cfg.usable >= 1, "usable pool must be at least 1 block"),
           (cfg.cap >= 0, "protected cap must be >= 0"),
           (cfg.headroom >= 0, "active headroom must be >= 0"),
           (cfg.cap <= cfg.usable - cfg.headroom,
            "protected cap must leave the active headroom free (cap <= usable - headroom)"),
           (cfg.response_ticks >= 0, "response_ticks must be >= 0")]
    for i, cc in enumerate(cfg.claims):
        out += [
            (cc.footprint >= 1, f"claim {i}: footprint_blocks must be > 0"),
            (cc.pred_start >= 0, f"claim {i}: predicate start must be >= 0"),
            (cc.pred_len >= 1, f"claim {i}: predicate must cover at least 1 block"),
            (cc.pred_start + cc.pred_len <= cc.footprint,
             f"claim {i}: predicate needs more blocks than the object has"),
            (ops.And(cc.mode >= 0, cc.mode <= max(Mode)), f"claim {i}: unknown protection mode"),
            (cc.duration >= 0, f"claim {i}: duration must be > 0 when given"),
            (ops.Implies(cc.mode == int(Mode.EXPIRING), cc.duration >= 1),
             f"claim {i}: an expiring claim needs a duration"),
            (cc.owner >= 0, f"claim {i}: owner must be >= 0"),
            (cc.identity >= 0, f"claim {i}: cache identity must be >= 0"),
        ]
    for j, rc in enumerate(cfg.requests):
        out += [(rc.need >= 1, f"request {j}: live blocks needed must be > 0"),
                (rc.identity >= 0, f"request {j}: cache identity must be >= 0")]
    return out


def well_formed(ops, cfg: Config):
    return ops.And(*(c for c, _ in config_errors(ops, cfg)))


def holds_all(ops, cfg, pol: Policy, s: State, ids=None):
    ids = ids or list(OBLIGATIONS)
    return {i: OBLIGATIONS[i].holds(ops, cfg, pol, s) for i in ids}


# What `kvclaims check` reports and the manifest pins: the strengthening invariants too, so
# that a change dropping one (it no longer holds, or no longer helps) shows in the table.
CHECKED: Dict[str, Invariant] = {**STRENGTHENING, **OBLIGATIONS}
