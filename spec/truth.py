"""Ground truth for the obligations, written apart from the guards and effects that decide.

An obligation that reuses the very helper an action's guard uses cannot catch a fault in that
helper: a predicate that held with k-1 blocks, or a blocking set that kept only the first
claim, would pass because both sides changed together.  So the quantities obligations judge
by (predicate, protected resident blocks, blocking claims, unprotected supply, feasibility)
are computed here by different formulas: positions counted by interval overlap instead of
interval containment, mode membership spelled out, supply by pool conservation.  Nothing in
spec/actions.py decides with these functions; they only feed ghost fields and obligations.
"""
from __future__ import annotations

from .state import ClaimConfig, ClaimState, Config, State
from .vocab import ClaimStatus as CS, Mode


def predicate_positions(ops, cc: ClaimConfig, c: ClaimState):
    """How many of the predicate's logical positions [start, start + k) are resident: the
    overlap of that interval with [lo, hi), clipped at 0."""
    hi = ops.Min(c.hi, cc.pred_start + cc.pred_len)
    lo = ops.If(c.lo >= cc.pred_start, c.lo, cc.pred_start)
    return ops.If(hi > lo, hi - lo, 0)


def predicate_true(ops, cc: ClaimConfig, c: ClaimState):
    """O5's judge: every one of the k predicate positions is resident."""
    return predicate_positions(ops, cc, c) == cc.pred_len


def on_record(ops, c: ClaimState):
    return ops.Or(c.status == int(CS.ACCEPTED), c.status == int(CS.MATERIALIZED))


def protecting_now(ops, clock, cc: ClaimConfig, c: ClaimState):
    """On record and in a mode whose blocks may not be ordinary victims; an expiring claim
    only strictly before acceptance time + duration (a claim past its duration neither
    protects nor blocks)."""
    within = ops.Or(cc.duration <= 0, clock - c.acc_clock < cc.duration)
    return ops.And(on_record(ops, c), ops.Or(
        cc.mode == int(Mode.HARD_PROTECTED), cc.mode == int(Mode.DEMOTABLE),
        ops.And(cc.mode == int(Mode.EXPIRING), within)))


def protected_blocks(ops, cfg: Config, s: State):
    return ops.Sum(ops.If(protecting_now(ops, s.clock, cc, c), c.hi - c.lo, 0)
                   for cc, c in zip(cfg.claims, s.claims))


def reserved(ops, cfg: Config, s: State):
    """Footprint of the protecting claims on record, whatever their residency (O11)."""
    return ops.Sum(ops.If(ops.And(on_record(ops, c), ops.Or(
        cc.mode == int(Mode.HARD_PROTECTED), cc.mode == int(Mode.DEMOTABLE),
        cc.mode == int(Mode.EXPIRING))), cc.footprint, 0)
        for cc, c in zip(cfg.claims, s.claims))


def blocking(ops, cfg: Config, s: State):
    """O8's truth: the claims protecting at least one resident block right now."""
    return tuple(ops.And(protecting_now(ops, s.clock, cc, c), c.lo < c.hi)
                 for cc, c in zip(cfg.claims, s.claims))


def free_supply(ops, cfg: Config, s: State):
    """Blocks obtainable without a protected one, by conservation: the pool less the protected
    blocks and the live blocks of running requests."""
    return cfg.usable - protected_blocks(ops, cfg, s) - ops.Sum(r.live for r in s.requests)


def conflict(ops, cfg: Config, s: State, j: int):
    return cfg.requests[j].need > free_supply(ops, cfg, s)


def infeasible(ops, cfg: Config, s: State, j: int):
    return protected_blocks(ops, cfg, s) + cfg.requests[j].need > cfg.usable


def shortfall(ops, cfg: Config, s: State, j: int):
    """capacity_shortfall_blocks: protected + need - usable when positive, else 0."""
    x = protected_blocks(ops, cfg, s) + cfg.requests[j].need - cfg.usable
    return ops.If(x > 0, x, 0)


def answerable(ops, cfg: Config, s: State, j: int):
    """The runtime itself can answer request j now: it fits beside the protected claims
    (serve it) or it never will while they stand (refuse it).  A request that only waits for
    running requests to finish is not the runtime's to answer."""
    return ops.Or(ops.Not(conflict(ops, cfg, s, j)), infeasible(ops, cfg, s, j))
