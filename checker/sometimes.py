"""Non-vacuity ("sometimes") properties: the situations the obligations are about really arise
under the conformant policies.  A proof over a spec in which the conflict never happens, or
in which an action can never fire, would prove nothing.  Each is a shortest-witness search
with the same unrolling as BMC; its trace is replayed through the concrete interpreter."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional

import z3

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


def _any_request(u: Unrolling, f):
    return z3.Or(*[f(j) for j in range(u.cfg.R)])


def _any_claim(u: Unrolling, f):
    return z3.Or(*[f(i) for i in range(u.cfg.K)])


def _conflict(u: Unrolling):
    s = u.states[-1]
    return _any_request(u, lambda j: z3.And(
        s.requests[j].status == int(RS.NONE),
        in_conflict(Z, u.cfg, s, j), infeasible(Z, u.cfg, s, j),
        _any_claim(u, lambda i: s.claims[i].status == int(CS.MATERIALIZED))))


# The paper's reference point: a 60-block hard claim, a 70-block request, 80 usable blocks.
REFERENCE_60_70_80 = Config(
    usable=80, cap=80,
    claims=(ClaimConfig(footprint=60, pred_start=0, pred_len=60, mode=int(Mode.HARD_PROTECTED),
                        owner=1, identity=0),),
    requests=(RequestConfig(need=70),))


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
        Sometimes("served_after_demotion_60_70_80", "the 70-block request runs after the claim "
                  "was demoted, at 60/70/80",
                  lambda u: z3.And(u.states[-1].requests[0].status == int(RS.RUNNING),
                                   u.states[-1].claims[0].status == int(CS.DEMOTED)),
                  REFERENCE_60_70_80),
        Sometimes("soft_claim_harmed", "a soft claim is harmed, with the harm event",
                  lambda u: _any_claim(u, lambda i: z3.And(
                      u.states[-1].claims[i].status == int(CS.HARMED),
                      u.cfg.claims[i].mode == int(Mode.SOFT_PRIORITY)))),
        Sometimes("expired", "an expiring claim expires",
                  lambda u: _any_claim(u, lambda i: u.states[-1].claims[i].status
                                       == int(CS.EXPIRED))),
    ]
    return out
