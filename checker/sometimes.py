"""Non-vacuity ("sometimes") properties: the situations the obligations are about really arise
under the conformant policies.  A proof over a spec in which the conflict never happens, or
in which an action can never fire, would prove nothing.  Each is a shortest-witness search
with the same unrolling as BMC; its trace is replayed through the concrete interpreter."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional

import z3

from kvclaims.spec import truth
from kvclaims.spec.actions import ACTIONS, in_conflict, infeasible
from kvclaims.spec.algebra import SYMBOLIC as Z
from kvclaims.spec.state import ClaimConfig, Config, RequestConfig
from kvclaims.spec.vocab import ClaimStatus as CS, Mode, RequestStatus as RS

from .bmc import Unrolling


@dataclass(frozen=True)
class Sometimes:
    id: str
    doc: str
    goal: Callable[[Unrolling], object]
    config: Optional[Config] = None     # None: symbolic (any sizes)
    # for a goal expected unreachable: a state predicate excluding it, proved inductive
    # (checker/unreachable.py), with a sentence saying what it states
    lemma: Optional[Callable[[Config, object], object]] = None
    lemma_doc: Optional[str] = None


def _claim0_not_demoted(cfg: Config, s):
    return s.claims[0].status != int(CS.DEMOTED)


def _any_request(u: Unrolling, f):
    return z3.Or(*[f(j) for j in range(u.cfg.R)])


def _any_claim(u: Unrolling, f):
    return z3.Or(*[f(i) for i in range(u.cfg.K)])


def _protecting_resident(u: Unrolling, s, i):
    """Claim i is materialized, protects its blocks and has some resident."""
    c = s.claims[i]
    return z3.And(c.status == int(CS.MATERIALIZED),
                  truth.protecting_now(Z, s.clock, u.cfg.claims[i], c), c.hi > c.lo)


def _conflict(u: Unrolling):
    """Not the degenerate witness (a one-block pool, nothing protected): a protected resident
    claim stands in the way of a pending request that the pool itself could hold."""
    s = u.states[-1]
    return _any_request(u, lambda j: z3.And(
        s.requests[j].status == int(RS.NONE),
        in_conflict(Z, u.cfg, s, j), infeasible(Z, u.cfg, s, j),
        u.cfg.requests[j].need <= u.cfg.usable,
        _any_claim(u, lambda i: _protecting_resident(u, s, i))))


def _waiting_conflict(u: Unrolling):
    """need <= pool and need > unprotected supply, yet feasible: the request must wait for
    running requests, neither refused nor served."""
    s = u.states[-1]
    return _any_request(u, lambda j: z3.And(
        s.requests[j].status == int(RS.NONE), u.cfg.requests[j].need <= u.cfg.usable,
        in_conflict(Z, u.cfg, s, j), z3.Not(infeasible(Z, u.cfg, s, j)),
        _any_claim(u, lambda i: _protecting_resident(u, s, i))))


def _two_blocking(u: Unrolling):
    """A deferral or refusal named two blocking claims at once."""
    s = u.states[-1]
    return _any_request(u, lambda j: z3.And(
        z3.Or(s.requests[j].status == int(RS.DEFERRED), s.requests[j].status == int(RS.REFUSED)),
        z3.Sum([z3.If(b, 1, 0) for b in s.requests[j].blocking]) >= 2))


def _loss_after_release(u: Unrolling):
    """O4's precondition: a protecting claim ended by a named event, then lost blocks."""
    s = u.states[-1]
    return _any_claim(u, lambda i: z3.And(
        z3.Or(*(s.claims[i].status == int(x) for x in (CS.DEMOTED, CS.EXPIRED, CS.RELEASED))),
        s.claims[i].loss_seq > 0,
        z3.Or(*(u.cfg.claims[i].mode == int(m)
                for m in (Mode.HARD_PROTECTED, Mode.DEMOTABLE, Mode.EXPIRING)))))


def _reference(mode: Mode) -> Config:
    """The paper's reference point: a 60-block claim, a 70-block request, 80 usable blocks,
    with the default headroom (20) and so cap 60."""
    return Config(
        usable=80, cap=60, headroom=20,
        claims=(ClaimConfig(footprint=60, pred_start=0, pred_len=60, mode=int(mode),
                            owner=1, identity=0),),
        requests=(RequestConfig(need=70),))


REFERENCE_60_70_80 = _reference(Mode.HARD_PROTECTED)
REFERENCE_DEMOTABLE_60_70_80 = _reference(Mode.DEMOTABLE)


def _small(claims, needs, usable, headroom=1) -> Config:
    """A small concrete configuration for a witness whose symbolic search is too slow (the
    two-claim witness timed out at depth 6 with every size symbolic)."""
    return Config(usable=usable, cap=usable - headroom, headroom=headroom,
                  claims=tuple(ClaimConfig(footprint=f, pred_start=0, pred_len=f,
                                           mode=int(m), owner=0, identity=0)
                               for f, m in claims),
                  requests=tuple(RequestConfig(need=n) for n in needs))


TWO_CLAIMS = _small([(2, Mode.HARD_PROTECTED), (2, Mode.HARD_PROTECTED)], [4], usable=6,
                    headroom=2)
WAITING = _small([(3, Mode.HARD_PROTECTED)], [2, 3], usable=6, headroom=2)
RELEASED = _small([(2, Mode.HARD_PROTECTED)], [3], usable=4, headroom=1)


def goals(policy_name: str) -> List[Sometimes]:
    out = [Sometimes(f"action:{a}", f"the action '{a}' can fire",
                     (lambda a: lambda u: u.last_action_is(a))(a))
           for a in ACTIONS]
    out += [
        Sometimes("conflict", "a materialized claim and a pending request with protected + "
                  "active live > usable", _conflict),
        Sometimes("conflict_60_70_80", "the 60/70/80 conflict (claim materialized, request "
                  "pending and infeasible) at the paper's sizes", _conflict, REFERENCE_60_70_80),
        Sometimes("refused_60_70_80", "the 70-block request is refused at 60/70/80",
                  lambda u: u.states[-1].requests[0].status == int(RS.REFUSED),
                  REFERENCE_60_70_80),
        Sometimes("served_after_demotion_60_70_80", "the 70-block request runs after the "
                  "demotable claim was demoted, at 60/70/80",
                  lambda u: z3.And(u.states[-1].requests[0].status == int(RS.RUNNING),
                                   u.states[-1].claims[0].status == int(CS.DEMOTED)),
                  REFERENCE_DEMOTABLE_60_70_80, _claim0_not_demoted,
                  "the demotable claim is never demoted"),
        Sometimes("hard_claim_never_demoted_60_70_80", "the hard claim is demoted at 60/70/80 "
                  "(must be unreachable: hard_demote refuses behind a hard claim)",
                  lambda u: u.states[-1].claims[0].status == int(CS.DEMOTED),
                  REFERENCE_60_70_80, _claim0_not_demoted, "the hard claim is never demoted"),
        Sometimes("waiting_conflict", "a protected resident claim, a pending request with "
                  "need <= usable and need > unprotected supply, feasible (it must wait)",
                  _waiting_conflict, WAITING),
        Sometimes("two_blocking_claims", "a deferral or refusal blocked by two claims at once",
                  _two_blocking, TWO_CLAIMS),
        Sometimes("loss_after_release", "O4's precondition: a protecting claim demoted, expired "
                  "or released, then its blocks lost", _loss_after_release, RELEASED),
        Sometimes("refused_after_waiting", "a deferred request refused after waiting a tick",
                  lambda u: _any_request(u, lambda j: z3.And(
                      u.states[-1].requests[j].status == int(RS.REFUSED),
                      u.states[-1].requests[j].waited >= 1))),
        Sometimes("soft_claim_harmed", "a soft claim is harmed, with the harm event",
                  lambda u: _any_claim(u, lambda i: z3.And(
                      u.states[-1].claims[i].status == int(CS.HARMED),
                      u.cfg.claims[i].mode == int(Mode.SOFT_PRIORITY)))),
        Sometimes("expired", "an expiring claim expires",
                  lambda u: _any_claim(u, lambda i: u.states[-1].claims[i].status
                                       == int(CS.EXPIRED))),
    ]
    return out
