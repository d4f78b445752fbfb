"""State of the resident-claim transition system.

The pool is abstracted to counts, which is what makes the z3 proofs parametric in pool size:
blocks are `empty` (never used or freed without future reuse), `cached` (ordinary reusable
cache nobody claims), resident blocks of the K claimable objects, and live blocks of the R
active requests.  Object i's resident logical positions are the interval [lo_i, hi_i): vLLM
frees tail first, so ordinary eviction shrinks hi; a runtime that protects a block *count*
may lose the head (lo grows), which is exactly how "59 blocks survive but position 0 is lost"
(L6) arises.  Slot i holds both object i and the claim on it (status NONE: nobody claimed it).

Every field is a Python value or a z3 term: the same dataclasses carry both interpretations.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Optional, Tuple

from .vocab import ClaimStatus, Mode, RequestStatus, RESPONSIBLE, PROTECTED_MODES

NO_DURATION = 0
# Ticks a request may stay deferred while the runtime could answer it (bounded response, O14).
DEFAULT_RESPONSE_TICKS = 1


def default_headroom(usable: int) -> int:
    """Blocks acceptance keeps free of protected claims for active work when the configuration
    does not say: a quarter of the usable pool.  The paper's 60/70/80 example (cap 60 of 80)
    sits exactly on this default; a deployment that knows its largest request states that."""
    return usable // 4


def default_cap(usable: int, headroom: int) -> int:
    """The acceptance cap a configuration gets when it gives none: everything but the headroom."""
    return usable - headroom


def headroom_given(usable: int, cap: Optional[int], headroom: Optional[int]) -> int:
    """The headroom a configuration means: the stated one; without one, the default when no cap
    is stated either, else what the stated cap leaves (the operator chose usable - cap)."""
    if headroom is not None:
        return headroom
    return default_headroom(usable) if cap is None else max(0, usable - cap)


@dataclass(frozen=True)
class ClaimConfig:
    """The claim on object i and the object itself (docs/CONTRACT.md section 3).

    `footprint` is the object's length in blocks; the materialization predicate is
    contiguous_range(pred_start, pred_len), with leading_prefix_at_least(k) = (0, k).
    Owner and cache identity are small integers naming a tenant and an identity domain."""
    footprint: Any
    pred_start: Any
    pred_len: Any
    mode: Any
    owner: Any
    identity: Any
    duration: Any = NO_DURATION


@dataclass(frozen=True)
class RequestConfig:
    """Active request j: live blocks it needs under full attention, and its cache identity."""
    need: Any
    identity: Any = 0


@dataclass(frozen=True)
class Config:
    """Parameters fixed for a run: usable pool blocks, the cap on protected (claimed)
    footprint that acceptance keeps, claims and requests; `headroom`, the minimum active
    headroom the cap must leave (cap <= usable - headroom), and `response_ticks`, how many
    ticks a deferred request the runtime could answer may wait for its answer (O14).  The
    defaults (0 and 1) keep positional construction of older configurations valid; user-facing
    configurations get default_headroom() from checker/configio.py."""
    usable: Any
    cap: Any
    claims: Tuple[ClaimConfig, ...]
    requests: Tuple[RequestConfig, ...]
    headroom: Any = 0
    response_ticks: Any = DEFAULT_RESPONSE_TICKS

    @property
    def K(self) -> int:
        return len(self.claims)

    @property
    def R(self) -> int:
        return len(self.requests)


@dataclass(frozen=True)
class ClaimState:
    """Object i's residency, claim i's lifecycle, and the ghost history of both.

    Ghost fields (never read by guards of conformant policies):
      acc_seq, mat_seq, end_seq  sequence numbers of the accepted / materialized / ending event
                                 (0 = not emitted); O9 orders them, O4 compares end with loss
      loss_seq                   seq of the first victim event on this object after acceptance
      victim_protected           a protected block was chosen as an ordinary victim (O3)
      harm_unclaimed             harm was reported for a claim not under responsibility (O1)
      nonowner_change            someone other than the owner released the claim (O10)
      last_event                 the claim status its latest lifecycle event announced: the
                                 claim's abstract event history, written only by the event log
                                 (spec/events.py), so an observer's reconstruction (O6) is
                                 computed from events alone, never from the status field
    """
    lo: Any
    hi: Any
    status: Any
    acc_clock: Any
    acc_seq: Any
    mat_seq: Any
    end_seq: Any
    loss_seq: Any
    victim_protected: Any
    harm_unclaimed: Any
    nonowner_change: Any
    last_event: Any


@dataclass(frozen=True)
class RequestState:
    """Active request j.  `reported_need` is active_live_blocks_required of its latest conflict
    event (-1: none); `named` are the blocking_claim_ids it carried, `blocking` the claims
    that really held protected resident blocks at that moment (ghost, for O8, computed by
    spec/truth.py).  Other ghosts: `last_event` the request status its latest event announced
    (O6); `waited` ticks spent deferred while the runtime could have answered (O14);
    `spurious` a deferral while it fitted or a refusal while it was feasible (O15);
    `misreported` a conflict event whose protected blocks, shortfall or feasibility verdict
    differed from the truth (O16)."""
    status: Any
    live: Any
    admit: Any
    reported_need: Any
    named: Tuple[Any, ...]
    blocking: Tuple[Any, ...]
    last_event: Any
    waited: Any
    spurious: Any
    misreported: Any


@dataclass(frozen=True)
class State:
    clock: Any
    seq: Any
    empty: Any
    cached: Any
    cross_identity_reuse: Any
    claims: Tuple[ClaimState, ...]
    requests: Tuple[RequestState, ...]


def initial_state(cfg: Config) -> State:
    """Empty pool, no claims, no requests (concrete values; the checker lifts them)."""
    return State(
        clock=0, seq=0, empty=cfg.usable, cached=0, cross_identity_reuse=False,
        claims=tuple(
            ClaimState(lo=0, hi=0, status=int(ClaimStatus.NONE), acc_clock=0, acc_seq=0,
                       mat_seq=0, end_seq=0, loss_seq=0, victim_protected=False,
                       harm_unclaimed=False, nonowner_change=False,
                       last_event=int(ClaimStatus.NONE))
            for _ in cfg.claims),
        requests=tuple(
            RequestState(status=int(RequestStatus.NONE), live=0, admit=True, reported_need=-1,
                         named=tuple(False for _ in cfg.claims),
                         blocking=tuple(False for _ in cfg.claims),
                         last_event=int(RequestStatus.NONE), waited=0, spurious=False,
                         misreported=False)
            for _ in cfg.requests),
    )


# --- derived quantities, written once for both interpretations -------------------------------

def resident(c: ClaimState):
    """Number of resident blocks of the object."""
    return c.hi - c.lo


def predicate_holds(ops, cc: ClaimConfig, c: ClaimState):
    """Materialization predicate over logical positions (O5): every position of
    [pred_start, pred_start + pred_len) is resident.  Block count plays no part."""
    return ops.And(c.lo <= cc.pred_start, c.hi >= cc.pred_start + cc.pred_len)


def leading_survived(ops, c: ClaimState):
    """Leading blocks survived (telemetry field): positions 0.. that are resident."""
    return ops.If(c.lo == 0, c.hi, 0)


def responsible(ops, c: ClaimState):
    return ops.In(c.status, RESPONSIBLE)


def overdue(ops, clock, cc: ClaimConfig, c: ClaimState):
    """An expiring claim whose duration has elapsed."""
    return ops.And(cc.mode == int(Mode.EXPIRING), cc.duration > 0,
                   clock >= c.acc_clock + cc.duration)


def protected_now(ops, clock, cc: ClaimConfig, c: ClaimState):
    """Blocks of this claim may not be ordinary eviction victims: under responsibility, in a
    protecting mode, and (for an expiring claim) within its duration.  The time check makes
    the allocator safe by itself; the tick's expiry event keeps the lifecycle honest."""
    return ops.And(responsible(ops, c), ops.In(cc.mode, PROTECTED_MODES),
                   ops.Not(overdue(ops, clock, cc, c)))


def protected_resident(ops, cfg: Config, s: State):
    """Protected resident blocks in the pool (the left term of the boundary)."""
    return ops.Sum(ops.If(protected_now(ops, s.clock, cc, c), resident(c), 0)
                   for cc, c in zip(cfg.claims, s.claims))


def active_live(ops, s: State):
    return ops.Sum(r.live for r in s.requests)


def reserved_footprint(ops, cfg: Config, s: State):
    """Footprint of accepted protecting claims: what acceptance control counts against cap."""
    return ops.Sum(ops.If(ops.And(responsible(ops, c), ops.In(cc.mode, PROTECTED_MODES)),
                          cc.footprint, 0)
                   for cc, c in zip(cfg.claims, s.claims))


def replace_claim(s: State, i: int, c: ClaimState) -> State:
    claims = list(s.claims)
    claims[i] = c
    return replace(s, claims=tuple(claims))


def replace_request(s: State, j: int, r: RequestState) -> State:
    reqs = list(s.requests)
    reqs[j] = r
    return replace(s, requests=tuple(reqs))


def flat_fields(s: State):
    """(name, value) of every state variable, in a fixed order: the checker's variables."""
    out = [(f.name, getattr(s, f.name)) for f in fields(State)
           if f.name not in ("claims", "requests")]
    for i, c in enumerate(s.claims):
        out += [(f"claims[{i}].{f.name}", getattr(c, f.name)) for f in fields(ClaimState)]
    for j, r in enumerate(s.requests):
        for f in fields(RequestState):
            v = getattr(r, f.name)
            if isinstance(v, tuple):
                out += [(f"requests[{j}].{f.name}[{i}]", x) for i, x in enumerate(v)]
            else:
                out.append((f"requests[{j}].{f.name}", v))
    return out


def build_state(K: int, R: int, value_of) -> State:
    """Build a State whose every variable is `value_of(name, kind)`, kind 'int' or 'bool';
    the inverse of flat_fields (used to make symbolic states and to parse traces)."""
    bools = {"cross_identity_reuse", "victim_protected", "harm_unclaimed", "nonowner_change",
             "admit", "named", "blocking", "spurious", "misreported"}
    kind = lambda n: "bool" if n in bools else "int"
    top = {f.name: value_of(f.name, kind(f.name)) for f in fields(State)
           if f.name not in ("claims", "requests")}
    claims = tuple(
        ClaimState(**{f.name: value_of(f"claims[{i}].{f.name}", kind(f.name))
                      for f in fields(ClaimState)})
        for i in range(K))
    reqs = []
    for j in range(R):
        kw = {}
        for f in fields(RequestState):
            if f.name in ("named", "blocking"):
                kw[f.name] = tuple(value_of(f"requests[{j}].{f.name}[{i}]", "bool")
                                   for i in range(K))
            else:
                kw[f.name] = value_of(f"requests[{j}].{f.name}", kind(f.name))
        reqs.append(RequestState(**kw))
    return State(claims=claims, requests=tuple(reqs), **top)
