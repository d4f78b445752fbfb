"""The actions of the resident-claim transition system: each one guard and one effect,
written once against `ops` (spec/algebra.py) and so read both concretely and by z3.

An action instance is (kind, slot indices, choices).  Slot indices are concrete (which claim,
which request); choices are the nondeterminism the contract leaves open (which blocks are the
victims, which claims a refusal names, who asks for a release), constrained by the guard and,
through it, by the policy.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, List, Tuple

from . import truth
from .events import EventLog
from .policy import Naming, Policy
from .state import (Config, State, ClaimState, RequestState, active_live, overdue,
                    predicate_holds, protected_now, protected_resident, replace_claim,
                    replace_request, reserved_footprint, resident, responsible)
from .vocab import (ClaimStatus as CS, Feasibility, Mode, PROTECTED_MODES, RequestStatus as RS,
                    UNMODELLED_MODES)


@dataclass(frozen=True)
class Choice:
    """A nondeterministic choice of an action: its name and sort ('int' or 'bool')."""
    name: str
    sort: str


@dataclass(frozen=True)
class ActionKind:
    name: str
    slots: Callable[[Config], List[Tuple[int, ...]]]
    choices: Callable[[Config, Policy], List[Choice]]
    guard: Callable[..., Any]
    effect: Callable[..., State]


def _claim_slots(cfg):
    return [(i,) for i in range(cfg.K)]


def _request_slots(cfg):
    return [(j,) for j in range(cfg.R)]


def _request_claim_slots(cfg):
    return [(j, i) for j in range(cfg.R) for i in range(cfg.K)]


def _none(cfg, pol):
    return []


def _set_claim_status(ops, ev: EventLog, c: ClaimState, cond, new, type_, announce=True,
                      **fields):
    """Change a claim's status and emit the event that announces it.  The observer's record
    (last_event) is written by the event log alone, so a status change without its event
    (announce false: a seeded fault) leaves the two apart and O6 sees it."""
    seq = ev.emit(ops.And(cond, announce), type_, **fields)
    return replace(c, status=ops.If(cond, int(new), c.status)), seq


def _set_request_status(ops, ev: EventLog, r: RequestState, cond, new, type_, **fields):
    ev.emit(cond, type_, **fields)
    return replace(r, status=ops.If(cond, int(new), r.status))


def predicate_now(ops, pol: Policy, cc, c: ClaimState):
    """The materialization predicate as the runtime evaluates it (O5 judges it with
    spec/truth.py's independent count); predicate_slack is a seeded fault."""
    if pol.predicate_slack:
        return ops.And(c.lo <= cc.pred_start, c.hi >= cc.pred_start + cc.pred_len - 1)
    return predicate_holds(ops, cc, c)


# --- the boundary: conflict, feasibility, blocking claims ------------------------------------

def recorded_protected(ops, cfg, s, i):
    """Claim i's record says its blocks are protected (responsible, protecting mode).  A loss
    of such a block without a named action first is what O3 forbids."""
    return ops.And(responsible(ops, s.claims[i]), ops.In(cfg.claims[i].mode, PROTECTED_MODES))


def unprotected_supply(ops, cfg, s):
    """Blocks an allocation can obtain without touching a protected block."""
    return s.empty + s.cached + ops.Sum(
        ops.If(protected_now(ops, s.clock, cc, c), 0, resident(c))
        for cc, c in zip(cfg.claims, s.claims))


def in_conflict(ops, cfg, s, j):
    """Request j does not fit beside the protected claims right now."""
    return cfg.requests[j].need > unprotected_supply(ops, cfg, s)


def does_not_fit(ops, cfg, pol: Policy, s, j):
    """Request j cannot be allocated now.  A runtime that arbitrates counts only unprotected
    blocks; stock vLLM (arbitrates false) would evict any cached block, so for it a request
    waits only when the whole pool less the running requests is too small."""
    if pol.arbitrates:
        return in_conflict(ops, cfg, s, j)
    return cfg.requests[j].need > cfg.usable - active_live(ops, s)


def answerable(ops, cfg, s, j):
    """The runtime can answer request j now: serve it (it fits) or refuse it (infeasible)."""
    return ops.Or(ops.Not(in_conflict(ops, cfg, s, j)), infeasible(ops, cfg, s, j))


def infeasible(ops, cfg, s, j):
    """protected resident + active live > usable: it will not fit while the claims stand,
    however long it waits (docs/CONTRACT.md section 2)."""
    return protected_resident(ops, cfg, s) + cfg.requests[j].need > cfg.usable


def blocking_claims(ops, cfg, s):
    """O8: exactly the claims whose protected blocks are resident in the pool."""
    return tuple(ops.And(protected_now(ops, s.clock, cc, c), resident(c) > 0)
                 for cc, c in zip(cfg.claims, s.claims))


# --- victims: shared by allocation (admit) and housekeeping eviction (evict) ----------------

def victims_allowed(ops, cfg, pol: Policy, s: State, take_cached, take, head, pressure):
    """Guard on a victim choice: amounts within what is resident, eviction order (tail first
    unless the policy ignores positions), and which claims the policy lets it touch.
    `pressure` is true when the allocation is in conflict with the protected claims."""
    conds = [take_cached >= 0, take_cached <= s.cached]
    prot = [protected_now(ops, s.clock, cc, c) for cc, c in zip(cfg.claims, s.claims)]
    unprotected_exhausted = ops.And(
        take_cached == s.cached,
        *(ops.Or(prot[k], take[k] == resident(s.claims[k])) for k in range(cfg.K)))
    for i, (cc, c) in enumerate(zip(cfg.claims, s.claims)):
        conds += [take[i] >= 0, take[i] <= resident(c)]
        if not pol.may_take_head:
            conds.append(ops.Not(head[i]))
        if not pol.honours_claims and not pol.preference_only:
            ok = True
        elif pol.preference_only:
            ok = ops.Or(ops.Not(prot[i]), unprotected_exhausted)
        elif pol.count_protection:
            ok = ops.Or(ops.Not(prot[i]), resident(c) - take[i] >= cc.pred_len)
        elif pol.late_announce:
            ok = ops.Or(ops.Not(prot[i]), pressure)
        else:
            ok = ops.Not(prot[i])
        if pol.conflict_noadmit:
            ok = ops.Or(ok, pressure)
        conds.append(ops.Implies(take[i] > 0, ok))
    return ops.And(*conds)


def apply_victims(ops, cfg, pol: Policy, s: State, take_cached, take, head, ev: EventLog,
                  cause: str):
    """Remove the chosen victims, then emit what the policy emits about them: harm for a claim
    whose materialization was broken, or (late_announce) the demotion/expiry it took."""
    before = s.claims
    claims = list(s.claims)
    announce = []
    for i, (cc, c) in enumerate(zip(cfg.claims, before)):
        lost = take[i] > 0
        rec_prot = recorded_protected(ops, cfg, s, i)
        seq = ev.emit(lost, "victim", object_id=i, blocks=take[i],
                      from_head=head[i], protected=rec_prot, reason=cause)
        late = ops.And(pol.late_announce, lost, rec_prot)
        announce.append(late)
        claims[i] = replace(
            c,
            lo=ops.If(head[i], c.lo + take[i], c.lo),
            hi=ops.If(head[i], c.hi, c.hi - take[i]),
            loss_seq=ops.If(ops.And(lost, c.acc_seq > 0, c.loss_seq == 0), seq, c.loss_seq),
            victim_protected=ops.Or(c.victim_protected,
                                    ops.And(lost, rec_prot, ops.Not(late))))
    for i, cc in enumerate(cfg.claims):
        c = claims[i]
        if pol.count_protection:
            # judged by count: blames only a drop below pred_len blocks, wherever they were
            judged = resident(c) >= cc.pred_len
        else:
            judged = predicate_now(ops, pol, cc, c)
        harmable = c.status == int(CS.MATERIALIZED)
        if pol.harm_unaccepted:
            harmable = ops.Or(harmable, ops.And(
                ops.In(c.status, (CS.SUBMITTED, CS.REJECTED)),
                predicate_now(ops, pol, cc, before[i])))
        harm = ops.And(pol.emits_harm, harmable, ops.Not(announce[i]), ops.Not(judged))
        c, seq = _set_claim_status(ops, ev, c, harm, CS.HARMED, "claim_harmed", claim_id=i,
                                   cause=cause)
        c = replace(c, end_seq=ops.If(harm, seq, c.end_seq),
                    harm_unclaimed=ops.Or(c.harm_unclaimed,
                                          ops.And(harm, ops.Not(responsible(ops, before[i])))))
        was_overdue = overdue(ops, s.clock, cc, before[i])
        late_to = ops.If(was_overdue, int(CS.EXPIRED), int(CS.DEMOTED))
        ev.emit(ops.And(announce[i], was_overdue), "claim_expired", claim_id=i, late=True)
        # exactly one of the two fires, so the log's seq is that event's
        seq = ev.emit(ops.And(announce[i], ops.Not(was_overdue)), "claim_demoted", claim_id=i,
                      late=True)
        c = replace(c, status=ops.If(announce[i], late_to, c.status),
                    end_seq=ops.If(announce[i], seq, c.end_seq))
        claims[i] = c
    return replace(s, cached=s.cached - take_cached, claims=tuple(claims))


def _victim_choices(cfg):
    out = [Choice("take_cached", "int")]
    out += [Choice(f"take[{i}]", "int") for i in range(cfg.K)]
    out += [Choice(f"head[{i}]", "bool") for i in range(cfg.K)]
    return out


def _victims(cfg, ch):
    return (ch["take_cached"], tuple(ch[f"take[{i}]"] for i in range(cfg.K)),
            tuple(ch[f"head[{i}]"] for i in range(cfg.K)))


# --- claim lifecycle -------------------------------------------------------------------------

def _claim_move(frm: CS, to: CS, type_: str):
    """Guard and effect of a plain lifecycle move (submit, reject): from one status to
    another, announced by its event."""
    def guard(ops, cfg, pol, s, idx, ch):
        return s.claims[idx[0]].status == int(frm)

    def effect(ops, cfg, pol, s, idx, ch, ev):
        i = idx[0]
        c, _ = _set_claim_status(ops, ev, s.claims[i], True, to, type_, claim_id=i)
        return replace_claim(s, i, c)
    return guard, effect


g_submit, e_submit = _claim_move(CS.NONE, CS.SUBMITTED, "claim_submitted")
# A runtime may always reject a submitted claim: rejection is a decision, never harm.
g_reject, e_reject = _claim_move(CS.SUBMITTED, CS.REJECTED, "claim_rejected")


def accept_allowed(ops, cfg, pol, s, i):
    """Acceptance control: the decision the runtime takes on a submitted claim.  Protecting
    claims count against the cap so active work keeps headroom; unmodelled modes are refused
    (fail closed); a pinning runtime may accept any other mode.  A preference-only runtime
    that accepts a hard claim breaks O7: that is its bug, not a guard here."""
    cc = cfg.claims[i]
    within_cap = True if pol.ignore_cap else \
        reserved_footprint(ops, cfg, s) + cc.footprint <= cfg.cap
    return ops.And(ops.Not(ops.In(cc.mode, UNMODELLED_MODES)),
                   ops.Implies(ops.In(cc.mode, PROTECTED_MODES), within_cap))


def g_accept(ops, cfg, pol, s, idx, ch):
    i = idx[0]
    return ops.And(s.claims[i].status == int(CS.SUBMITTED), accept_allowed(ops, cfg, pol, s, i))


def e_accept(ops, cfg, pol, s, idx, ch, ev):
    i = idx[0]
    cc = cfg.claims[i]
    c, acc = _set_claim_status(ops, ev, s.claims[i], True, CS.ACCEPTED, "claim_accepted",
                               claim_id=i, protection_mode=cc.mode)
    c = replace(c, acc_seq=acc, acc_clock=s.clock)
    # Accepting a claim whose object is already resident materializes it at once.
    now = predicate_now(ops, pol, cc, c)
    c, mat = _set_claim_status(ops, ev, c, now, CS.MATERIALIZED, "claim_materialized",
                               claim_id=i)
    c = replace(c, mat_seq=ops.If(now, mat, c.mat_seq))
    return replace_claim(s, i, c)


def g_materialize(ops, cfg, pol, s, idx, ch):
    i = idx[0]
    c = s.claims[i]
    return ops.And(c.lo == c.hi, s.empty >= cfg.claims[i].footprint)


def e_materialize(ops, cfg, pol, s, idx, ch, ev):
    """Prefill the object into free blocks: positions 0..footprint-1 become resident."""
    i = idx[0]
    cc = cfg.claims[i]
    ev.emit(True, "object_stored", object_id=i, blocks=cc.footprint)
    c = replace(s.claims[i], lo=0, hi=cc.footprint)
    decided = (CS.SUBMITTED, CS.ACCEPTED) if pol.materialize_unaccepted else (CS.ACCEPTED,)
    now = ops.And(ops.In(c.status, decided), predicate_now(ops, pol, cc, c))
    c, mat = _set_claim_status(ops, ev, c, now, CS.MATERIALIZED, "claim_materialized",
                               claim_id=i)
    c = replace(c, mat_seq=ops.If(now, mat, c.mat_seq))
    return replace(replace_claim(s, i, c), empty=s.empty - cc.footprint)


def g_release(ops, cfg, pol, s, idx, ch):
    return ops.And(responsible(ops, s.claims[idx[0]]), ch["actor"] >= 0)


def e_release(ops, cfg, pol, s, idx, ch, ev):
    """Release by the owner.  Anyone else's release is refused and reported (O10)."""
    i = idx[0]
    is_owner = ch["actor"] == cfg.claims[i].owner
    ok = is_owner if pol.owner_check else True
    ev.emit(ops.Not(ok), "release_denied", claim_id=i, actor=ch["actor"])
    c, seq = _set_claim_status(ops, ev, s.claims[i], ok, CS.RELEASED, "claim_released",
                               claim_id=i, actor=ch["actor"])
    c = replace(c, end_seq=ops.If(ok, seq, c.end_seq),
                nonowner_change=ops.Or(c.nonowner_change, ops.And(ok, ops.Not(is_owner))))
    return replace_claim(s, i, c)


def g_demote(ops, cfg, pol, s, idx, ch):
    """Relax a claim that stands in request j's way, so j can be served (hard_demote).  Only a
    demotable claim may be relaxed: a hard_protected claim ends only by its owner's release
    (or, expiring, by its expiry), so behind one the request is deferred or refused."""
    j, i = idx
    c = s.claims[i]
    mode_ok = True if pol.demote_any_mode else cfg.claims[i].mode == int(Mode.DEMOTABLE)
    return ops.And(pol.demote_on_conflict, mode_ok,
                   protected_now(ops, s.clock, cfg.claims[i], c), resident(c) > 0,
                   ops.In(s.requests[j].status, (RS.NONE, RS.DEFERRED)),
                   in_conflict(ops, cfg, s, j))


def e_demote(ops, cfg, pol, s, idx, ch, ev):
    j, i = idx
    c, seq = _set_claim_status(ops, ev, s.claims[i], True, CS.DEMOTED, "claim_demoted",
                               announce=not pol.silent_demote, claim_id=i, request_id=j)
    return replace_claim(s, i, replace(c, end_seq=seq))


def g_tick(ops, cfg, pol, s, idx, ch):
    """Time passes, except past a deferred request the runtime could answer and has left
    waiting response_ticks ticks already: a runtime with bounded response answers it first
    (serve or refuse are then enabled; waiting for running requests is not its to bound)."""
    if not pol.bounded_response:
        return True
    return ops.And(*(ops.Not(ops.And(r.status == int(RS.DEFERRED), answerable(ops, cfg, s, j),
                                     r.waited >= cfg.response_ticks))
                     for j, r in enumerate(s.requests)))


def e_tick(ops, cfg, pol, s, idx, ch, ev):
    """Advance the logical clock; a conformant runtime expires overdue claims with an event
    in the same step, so no moment exists in which an overdue claim is still on record.
    Ghost: each deferred request the runtime could have answered (judged by spec/truth.py)
    has waited one tick more."""
    reqs = tuple(replace(r, waited=r.waited + ops.If(
        ops.And(r.status == int(RS.DEFERRED), truth.answerable(ops, cfg, s, j)), 1, 0))
        for j, r in enumerate(s.requests))
    s = replace(s, requests=reqs)
    clock = s.clock + 1
    claims = []
    for i, (cc, c) in enumerate(zip(cfg.claims, s.claims)):
        due = ops.And(pol.expiry_check, responsible(ops, c),
                      overdue(ops, clock, cc, c))
        c, seq = _set_claim_status(ops, ev, c, due, CS.EXPIRED, "claim_expired", claim_id=i)
        claims.append(replace(c, end_seq=ops.If(due, seq, c.end_seq)))
    return replace(s, clock=clock, claims=tuple(claims))


# --- active requests -------------------------------------------------------------------------

def g_admit(ops, cfg, pol, s, idx, ch):
    j = idx[0]
    need = cfg.requests[j].need
    from_empty = ops.Min(s.empty, need)
    take_cached, take, head = _victims(cfg, ch)
    pressure = in_conflict(ops, cfg, s, j)
    conds = [ops.In(s.requests[j].status, (RS.NONE, RS.DEFERRED)),
             take_cached + ops.Sum(take) == need - from_empty,
             victims_allowed(ops, cfg, pol, s, take_cached, take, head, pressure)]
    if pol.conflict_noadmit:
        # its one answer to a conflict: deny future reuse and serve anyway
        conds.append(ops.Implies(pressure, ops.Not(ch["admit"])))
    return ops.And(*conds)


def e_admit(ops, cfg, pol, s, idx, ch, ev):
    """Allocate the request's live blocks: free blocks first, then the chosen victims."""
    j = idx[0]
    need = cfg.requests[j].need
    from_empty = ops.Min(s.empty, need)
    take_cached, take, head = _victims(cfg, ch)
    r = s.requests[j]
    reported = r.reported_need
    if pol.conflict_noadmit:
        pressure = in_conflict(ops, cfg, s, j)
        # It believes no-admit bounds live KV, so its conflict event claims 0 live blocks.
        ev.emit(pressure, "conflict", request_id=j, active_live_blocks_required=0,
                arbiter_action="serve_no_admit")
        reported = ops.If(pressure, 0, reported)
    s2 = apply_victims(ops, cfg, pol, replace(s, empty=s.empty - from_empty),
                       take_cached, take, head, ev, cause=f"admit:{j}")
    r = _set_request_status(ops, ev, r, True, RS.RUNNING, "request_admitted", request_id=j,
                            live_blocks=need, admit_future_reuse=ch["admit"])
    r = replace(r, live=need, admit=ch["admit"], reported_need=reported)
    return replace_request(s2, j, r)


def g_finish(ops, cfg, pol, s, idx, ch):
    return s.requests[idx[0]].status == int(RS.RUNNING)


def e_finish(ops, cfg, pol, s, idx, ch, ev):
    """Live blocks become ordinary cache if future reuse was admitted, free blocks if not."""
    j = idx[0]
    r = s.requests[j]
    r2 = _set_request_status(ops, ev, r, True, RS.FINISHED, "request_finished", request_id=j)
    freed = 0 if pol.leak_on_finish else r.live
    s2 = replace(s, cached=s.cached + ops.If(r.admit, r.live, 0),
                 empty=s.empty + ops.If(r.admit, 0, freed))
    return replace_request(s2, j, replace(r2, live=0))


def _naming(ops, pol, truth, ch, K):
    if pol.naming == Naming.EXACT:
        return truth
    picks = tuple(ch[f"name[{i}]"] for i in range(K))
    if pol.naming == Naming.SUBSET:
        return tuple(ops.And(p, t) for p, t in zip(picks, truth))
    return picks


def _naming_choices(cfg, pol):
    if pol.naming == Naming.EXACT:
        return []
    return [Choice(f"name[{i}]", "bool") for i in range(cfg.K)]


def _record_conflict(ops, cfg, pol, s, j, ch, ev, action):
    """The conflict event of a deferral or refusal (docs/CONTRACT.md section 7), and the ghost
    record of what was true then (spec/truth.py): the blocking claims (O8) and whether the
    event's protected blocks, shortfall and feasibility verdict were right (O16).  A runtime
    that does not arbitrate emits no conflict event: its request just waits."""
    r = s.requests[j]
    if not pol.arbitrates:
        return r
    named = _naming(ops, pol, blocking_claims(ops, cfg, s), ch, cfg.K)
    prot = protected_resident(ops, cfg, s)
    need = cfg.requests[j].need
    if pol.misreport_conflict:
        bad = in_conflict(ops, cfg, s, j)
        short = need - s.empty
    else:
        bad = infeasible(ops, cfg, s, j)
        over = prot + need - cfg.usable
        short = ops.If(over > 0, over, 0)
    ev.emit(True, "conflict", request_id=j, blocking_claim_ids=named,
            protected_resident_blocks=prot, active_live_blocks_required=need,
            resident_plus_active_blocks=prot + active_live(ops, s) + need,
            capacity_shortfall_blocks=short,
            free_blocks_before_allocate=s.empty, usable_blocks=cfg.usable,
            feasibility=ops.If(bad, int(Feasibility.INFEASIBLE), int(Feasibility.WAIT)),
            arbiter_action=action)
    wrong = ops.Or(prot != truth.protected_blocks(ops, cfg, s),
                   short != truth.shortfall(ops, cfg, s, j),
                   bad != truth.infeasible(ops, cfg, s, j))
    return replace(r, reported_need=need, named=named, blocking=truth.blocking(ops, cfg, s),
                   misreported=ops.Or(r.misreported, wrong))


def g_defer(ops, cfg, pol, s, idx, ch):
    j = idx[0]
    fits_ok = True if pol.defer_when_fits else does_not_fit(ops, cfg, pol, s, j)
    return ops.And(s.requests[j].status == int(RS.NONE), fits_ok)


def e_defer(ops, cfg, pol, s, idx, ch, ev):
    """Defer request j; ghost: it was spurious if j fitted beside the protected claims."""
    j = idx[0]
    r = _record_conflict(ops, cfg, pol, s, j, ch, ev, "defer")
    r = replace(r, spurious=ops.Or(r.spurious, ops.Not(truth.conflict(ops, cfg, s, j))))
    r = _set_request_status(ops, ev, r, True, RS.DEFERRED, "request_deferred", request_id=j)
    return replace_request(s, j, r)


def g_refuse(ops, cfg, pol, s, idx, ch):
    j = idx[0]
    hopeless = True if pol.refuse_when_waiting else infeasible(ops, cfg, s, j)
    return ops.And(pol.arbitrates, s.requests[j].status == int(RS.DEFERRED),
                   in_conflict(ops, cfg, s, j), hopeless)


def e_refuse(ops, cfg, pol, s, idx, ch, ev):
    """Refuse request j; ghost: it was spurious unless protected + need > usable."""
    j = idx[0]
    r = _record_conflict(ops, cfg, pol, s, j, ch, ev, "refuse")
    r = replace(r, spurious=ops.Or(r.spurious, ops.Not(truth.infeasible(ops, cfg, s, j))))
    r = _set_request_status(ops, ev, r, True, RS.REFUSED, "request_refused", request_id=j)
    return replace_request(s, j, r)


# --- housekeeping eviction and reuse ---------------------------------------------------------

def _single_victim(cfg, i, ch):
    take = tuple(1 if k == i else 0 for k in range(cfg.K))
    head = tuple(ch["head"] if k == i else False for k in range(cfg.K))
    return take, head


def g_evict(ops, cfg, pol, s, idx, ch):
    """Evict one block of object i outside any allocation."""
    i = idx[0]
    take, head = _single_victim(cfg, i, ch)
    return ops.And(resident(s.claims[i]) >= 1,
                   victims_allowed(ops, cfg, pol, s, 0, take, head, False))


def e_evict(ops, cfg, pol, s, idx, ch, ev):
    i = idx[0]
    take, head = _single_victim(cfg, i, ch)
    s2 = apply_victims(ops, cfg, pol, s, 0, take, head, ev, cause="evict")
    return replace(s2, empty=s2.empty + 1)


def g_evict_cached(ops, cfg, pol, s, idx, ch):
    return s.cached >= 1


def e_evict_cached(ops, cfg, pol, s, idx, ch, ev):
    ev.emit(True, "victim", object_id=None, blocks=1, protected=False, reason="evict")
    return replace(s, cached=s.cached - 1, empty=s.empty + 1)


def g_reuse(ops, cfg, pol, s, idx, ch):
    """Request j looks object i up in the prefix cache and hits it."""
    j, i = idx
    cond = [s.requests[j].status == int(RS.NONE), resident(s.claims[i]) > 0]
    if pol.identity_check:
        cond.append(cfg.requests[j].identity == cfg.claims[i].identity)
    return ops.And(*cond)


def e_reuse(ops, cfg, pol, s, idx, ch, ev):
    j, i = idx
    ev.emit(True, "prefix_hit", request_id=j, object_id=i)
    return replace(s, cross_identity_reuse=ops.Or(
        s.cross_identity_reuse, cfg.requests[j].identity != cfg.claims[i].identity))


ACTIONS: Dict[str, ActionKind] = {a.name: a for a in (
    ActionKind("submit", _claim_slots, _none, g_submit, e_submit),
    ActionKind("accept", _claim_slots, _none, g_accept, e_accept),
    ActionKind("reject", _claim_slots, _none, g_reject, e_reject),
    ActionKind("materialize", _claim_slots, _none, g_materialize, e_materialize),
    ActionKind("admit", _request_slots,
               lambda cfg, pol: [Choice("admit", "bool")] + _victim_choices(cfg),
               g_admit, e_admit),
    ActionKind("finish", _request_slots, _none, g_finish, e_finish),
    ActionKind("evict", _claim_slots, lambda cfg, pol: [Choice("head", "bool")],
               g_evict, e_evict),
    ActionKind("evict_cached", lambda cfg: [()], _none, g_evict_cached, e_evict_cached),
    ActionKind("tick", lambda cfg: [()], _none, g_tick, e_tick),
    ActionKind("demote", _request_claim_slots, _none, g_demote, e_demote),
    ActionKind("release", _claim_slots, lambda cfg, pol: [Choice("actor", "int")],
               g_release, e_release),
    ActionKind("defer", _request_slots, _naming_choices, g_defer, e_defer),
    ActionKind("refuse", _request_slots, _naming_choices, g_refuse, e_refuse),
    ActionKind("reuse", _request_claim_slots, _none, g_reuse, e_reuse),
)}


@dataclass(frozen=True)
class Step:
    """One labelled transition: the action taken and its arguments (slots and choices)."""
    action: str
    slots: Tuple[int, ...]
    choices: Tuple[Tuple[str, Any], ...] = ()

    def label(self) -> str:
        return f"{self.action}{self.slots}" + (f" {dict(self.choices)}" if self.choices else "")


def complete_choices(cfg, pol, step: Step) -> Dict[str, Any]:
    """Fill choices the caller left out with their neutral value (no victims, tail, admit)."""
    given = dict(step.choices)
    out = {}
    for c in ACTIONS[step.action].choices(cfg, pol):
        if c.name in given:
            out[c.name] = given.pop(c.name)
        else:
            out[c.name] = {"admit": True}.get(c.name, False if c.sort == "bool" else 0)
    if given:
        raise ValueError(f"action {step.action} has no choice(s) {sorted(given)}")
    return out


def enabled(ops, cfg, pol, s, step: Step, choices=None):
    kind = ACTIONS[step.action]
    ch = choices if choices is not None else complete_choices(cfg, pol, step)
    return kind.guard(ops, cfg, pol, s, step.slots, ch)


def successor(ops, cfg, pol, s, step: Step, choices=None, record=False):
    """The effect of a step (guard not checked) and the event log it wrote."""
    kind = ACTIONS[step.action]
    ch = choices if choices is not None else complete_choices(cfg, pol, step)
    ev = EventLog(ops, s.seq, record, [c.last_event for c in s.claims],
                  [r.last_event for r in s.requests])
    s2 = kind.effect(ops, cfg, pol, s, step.slots, ch, ev)
    claims = tuple(replace(c, last_event=x) for c, x in zip(s2.claims, ev.claim_last))
    reqs = tuple(replace(r, last_event=x) for r, x in zip(s2.requests, ev.request_last))
    return replace(s2, seq=ev.seq, claims=claims, requests=reqs), ev
