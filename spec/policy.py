"""Policies are data, not forks: one spec, with the runtime's behaviour at the boundary given
by a handful of switches.  Named policies (docs/CONTRACT.md and the spec issue) and the seeded
mutations of the conformant ones are all presets of the same switches."""
from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

from .vocab import Primitive


class Naming(str, Enum):
    """How a refusal or deferral fills blocking_claim_ids (O8)."""
    EXACT = "exact"        # every claim with protected resident blocks, and no other
    SUBSET = "subset"      # some of them (a claim may be forgotten)
    ANY = "any"            # any set at all (wrong or incomplete attribution)


@dataclass(frozen=True)
class Policy:
    name: str
    conformant: bool
    # the allocator never takes a protected block as a victim (O3)
    honours_claims: bool = True
    # protected blocks are only a lower eviction preference: taken once nothing else is left
    preference_only: bool = False
    # what claims are lowered onto (O7)
    primitive: Primitive = Primitive.PIN
    # protect a claim's block *count* (pred_len blocks), wherever they are, not its positions
    count_protection: bool = False
    # answer a conflict by serving the request with future reuse denied, as if that freed room
    conflict_noadmit: bool = False
    # may demote a blocking claim (event first) to serve a request
    demote_on_conflict: bool = False
    # takes protected blocks and announces the demotion / expiry after the loss
    late_announce: bool = False
    naming: Naming = Naming.EXACT
    # emits a harm event when a claim under responsibility loses its predicate
    emits_harm: bool = True
    # tick expires overdue claims with an event
    expiry_check: bool = True
    # only a claim's owner may release it (O10)
    owner_check: bool = True
    # reuse only within a cache identity (O10)
    identity_check: bool = True
    # answers a request that does not fit with a named conflict event, a deferral and (when
    # infeasible) a refusal; stock vLLM does not: a request that does not fit simply waits
    arbitrates: bool = True
    # answers a deferred request it could answer within cfg.response_ticks ticks (O14)
    bounded_response: bool = True
    # --- switches that exist only to seed mutations (each breaks one piece of the contract) --
    # acceptance ignores the protected cap (O11, O12)
    ignore_cap: bool = False
    # demotes a blocking claim whatever its mode, hard_protected included (O13)
    demote_any_mode: bool = False
    # changes a claim's status to demoted without the event (O6)
    silent_demote: bool = False
    # the materialization predicate it evaluates holds with one block fewer (O5)
    predicate_slack: bool = False
    # reports harm for a claim whose object lost its predicate even if the claim was never
    # accepted (submitted or rejected): ordinary eviction reported as harm (O1)
    harm_unaccepted: bool = False
    # announces materialization of a submitted claim before deciding on it (O9)
    materialize_unaccepted: bool = False
    # refuses a deferred request in conflict even when it would fit once running requests
    # finish (O15)
    refuse_when_waiting: bool = False
    # defers a request that fits in unprotected memory (O15)
    defer_when_fits: bool = False
    # calls every conflict infeasible and reports the free-block shortfall need - empty (O16)
    misreport_conflict: bool = False
    # does not return the live blocks of a request finished without future reuse (S1)
    leak_on_finish: bool = False

    @property
    def may_take_head(self) -> bool:
        """Victims from the head of an object: only a runtime that does not care about
        positions (block counting) picks them; everyone else frees tail first like vLLM."""
        return self.count_protection


HARD_REFUSE = Policy("hard_refuse", conformant=True)
HARD_DEMOTE = Policy("hard_demote", conformant=True, demote_on_conflict=True)

POLICIES = {p.name: p for p in (
    # stock vLLM: evicts anything, names nothing, never refuses; a request that does not fit
    # waits (no answer within any bound)
    Policy("native", conformant=False, honours_claims=False, emits_harm=False,
           arbitrates=False, bounded_response=False),
    Policy("soft_priority", conformant=False, honours_claims=False, preference_only=True,
           primitive=Primitive.PREFERENCE, emits_harm=False),
    Policy("write_no_admit", conformant=False, conflict_noadmit=True),
    Policy("block_count", conformant=False, count_protection=True),
    Policy("late_release", conformant=False, late_announce=True, expiry_check=False),
    Policy("misattribute", conformant=False, naming=Naming.ANY),
    HARD_REFUSE,
    HARD_DEMOTE,
)}

CONFORMANT = tuple(n for n, p in POLICIES.items() if p.conformant)
BAD = tuple(n for n, p in POLICIES.items() if not p.conformant)

# Seeded mutations of the conformant policies: the checker must catch every one.
def _mutant(base: Policy, key: str, **faults) -> Policy:
    return replace(base, name=f"{base.name}/{key}", conformant=False, **faults)


MUTATIONS = {k: _mutant(base, k, **faults) for k, base, faults in (
    ("drop_protection_guard", HARD_REFUSE, dict(honours_claims=False)),
    ("demotion_after_loss", HARD_DEMOTE, dict(late_announce=True)),
    ("forget_blocking_claim", HARD_REFUSE, dict(naming=Naming.SUBSET)),
    ("skip_expiry_check", HARD_REFUSE, dict(expiry_check=False)),
    ("count_blocks", HARD_REFUSE, dict(count_protection=True)),
    ("skip_owner_check", HARD_DEMOTE, dict(owner_check=False)),
    ("accept_over_cap", HARD_REFUSE, dict(ignore_cap=True)),
    ("demote_hard_claim", HARD_DEMOTE, dict(demote_any_mode=True)),
    ("silent_demotion", HARD_DEMOTE, dict(silent_demote=True)),
    ("predicate_k_minus_1", HARD_REFUSE, dict(predicate_slack=True)),
    ("harm_unaccepted", HARD_REFUSE, dict(harm_unaccepted=True)),
    ("materialize_unaccepted", HARD_REFUSE, dict(materialize_unaccepted=True)),
    ("preference_lowering", HARD_REFUSE, dict(primitive=Primitive.PREFERENCE)),
    ("noadmit_as_bounding", HARD_REFUSE, dict(conflict_noadmit=True)),
    ("defer_forever", HARD_REFUSE, dict(bounded_response=False)),
    ("refuse_when_waiting", HARD_REFUSE, dict(refuse_when_waiting=True)),
    ("defer_when_fits", HARD_REFUSE, dict(defer_when_fits=True)),
    ("misreport_conflict", HARD_REFUSE, dict(misreport_conflict=True)),
    ("leak_on_finish", HARD_REFUSE, dict(leak_on_finish=True)),
)}

# What each seeded mutation breaks, and the check written to catch it (the catalogue `make
# mutate` reports against: a mutation caught only by some other check still counts as killed,
# but the report says so).
MUTATION_TARGETS = {
    "drop_protection_guard": ("O3", "the allocator may take protected blocks as victims"),
    "demotion_after_loss": ("O4", "the demotion is announced after the blocks were lost"),
    "forget_blocking_claim": ("O8", "a refusal may leave a blocking claim unnamed"),
    "skip_expiry_check": ("S5", "an overdue claim stays on record (and keeps protecting)"),
    "count_blocks": ("O5", "protects pred_len blocks anywhere instead of the positions"),
    "skip_owner_check": ("O10", "anyone may release a claim"),
    "accept_over_cap": ("O11", "acceptance ignores the protected cap"),
    "demote_hard_claim": ("O13", "hard_demote demotes a hard_protected claim"),
    "silent_demotion": ("O6", "a claim is demoted without the event"),
    "predicate_k_minus_1": ("O5", "the predicate holds with k-1 of its k positions"),
    "harm_unaccepted": ("O1", "ordinary eviction of an unaccepted claim's object reported as "
                              "harm"),
    "materialize_unaccepted": ("O9", "materialized announced before the claim is accepted"),
    "preference_lowering": ("O7", "hard claims lowered onto an eviction preference"),
    "noadmit_as_bounding": ("O2", "a conflict answered by no-admit, as if it bounded live KV"),
    "defer_forever": ("O14", "a deferred request the runtime could answer is never answered"),
    "refuse_when_waiting": ("O15", "refuses a request that would fit once running ones finish"),
    "defer_when_fits": ("O15", "defers a request that fits in unprotected memory"),
    "misreport_conflict": ("O16", "conflict events call every conflict infeasible and report "
                                  "need - free as the shortfall"),
    "leak_on_finish": ("S1", "a finished request's live blocks are not returned to the pool"),
}
assert set(MUTATION_TARGETS) == set(MUTATIONS)


def policy_by_name(name: str) -> Policy:
    if name in POLICIES:
        return POLICIES[name]
    if name in MUTATIONS:
        return MUTATIONS[name]
    raise KeyError(name)
