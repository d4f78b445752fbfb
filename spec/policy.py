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

    @property
    def may_take_head(self) -> bool:
        """Victims from the head of an object: only a runtime that does not care about
        positions (block counting) picks them; everyone else frees tail first like vLLM."""
        return self.count_protection


HARD_REFUSE = Policy("hard_refuse", conformant=True)
HARD_DEMOTE = Policy("hard_demote", conformant=True, demote_on_conflict=True)

POLICIES = {p.name: p for p in (
    Policy("native", conformant=False, honours_claims=False, emits_harm=False),
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
MUTATIONS = {
    "drop_protection_guard": replace(HARD_REFUSE, name="hard_refuse/drop_protection_guard",
                                     conformant=False, honours_claims=False),
    "demotion_after_loss": replace(HARD_DEMOTE, name="hard_demote/demotion_after_loss",
                                   conformant=False, late_announce=True),
    "forget_blocking_claim": replace(HARD_REFUSE, name="hard_refuse/forget_blocking_claim",
                                     conformant=False, naming=Naming.SUBSET),
    "skip_expiry_check": replace(HARD_REFUSE, name="hard_refuse/skip_expiry_check",
                                 conformant=False, expiry_check=False),
    "count_blocks": replace(HARD_REFUSE, name="hard_refuse/count_blocks", conformant=False,
                            count_protection=True),
    "skip_owner_check": replace(HARD_DEMOTE, name="hard_demote/skip_owner_check",
                                conformant=False, owner_check=False),
}


def policy_by_name(name: str) -> Policy:
    if name in POLICIES:
        return POLICIES[name]
    if name in MUTATIONS:
        return MUTATIONS[name]
    raise KeyError(name)
