"""Claims as a runtime receives them (CONTRACT.md section 3): cache identity, materialization
predicate and the claim itself, with validation at submission (issue 4, item 8).

Protection modes and lifecycle states are the spec's enums (kvclaims.spec.vocab); telemetry
spells them by their lower-case names."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple, Union

from kvclaims.spec.vocab import Mode, PROTECTED_MODES, RESPONSIBLE, UNMODELLED_MODES


class ClaimError(ValueError):
    """A claim that is malformed: rejected at submission with this message."""


@dataclass(frozen=True)
class CacheIdentity:
    """The equivalence domain of reuse.  Two prompts share KV only within one identity: the
    identity is folded into every block hash, so another salt or model id never hits."""
    key_domain: str = "default"
    model_id: str = "model"
    tokenizer_id: str = "tokenizer"
    salt_namespace: str = ""
    block_size: int = 16
    adapter_id: Optional[str] = None
    prompt_embedding_id: Optional[str] = None
    kv_format: Optional[str] = None

    def key(self) -> Tuple[Any, ...]:
        return (self.key_domain, self.model_id, self.tokenizer_id, self.salt_namespace,
                self.block_size, self.adapter_id, self.prompt_embedding_id, self.kv_format)

    def to_json(self) -> Dict[str, Any]:
        return {k: v for k, v in zip(
            ("key_domain", "model_id", "tokenizer_id", "salt_namespace", "block_size",
             "adapter_id", "prompt_embedding_id", "kv_format"), self.key()) if v is not None}


@dataclass(frozen=True)
class Predicate:
    """Materialization predicate over logical block positions: every position of
    [start, start + k) is resident.  leading_prefix_at_least(k) is start = 0."""
    start: int
    k: int

    @staticmethod
    def leading_prefix_at_least(k: int) -> "Predicate":
        return Predicate(0, k)

    @staticmethod
    def contiguous_range(start: int, k: int) -> "Predicate":
        return Predicate(start, k)

    @property
    def end(self) -> int:
        return self.start + self.k

    def holds(self, lo: int, hi: int) -> bool:
        """Over a resident interval [lo, hi) (O5: positions, never a block count)."""
        return lo <= self.start and hi >= self.end

    def to_json(self) -> Dict[str, Any]:
        if self.start == 0:
            return {"kind": "leading_prefix_at_least", "k": self.k}
        return {"kind": "contiguous_range", "start": self.start, "k": self.k}


MODE_NAMES = {m: m.name.lower() for m in Mode}
MODES_BY_NAME = {v: k for k, v in MODE_NAMES.items()}


def parse_mode(mode: Union[Mode, str, int]) -> Mode:
    if isinstance(mode, Mode):
        return mode
    if isinstance(mode, str) and mode in MODES_BY_NAME:
        return MODES_BY_NAME[mode]
    if isinstance(mode, int) and not isinstance(mode, bool) and mode in set(Mode):
        return Mode(mode)
    raise ClaimError(f"unknown protection mode {mode!r} "
                     f"(choose from {', '.join(MODES_BY_NAME)})")


@dataclass(frozen=True)
class ClaimSpec:
    """A resident claim as submitted (CONTRACT.md section 3).  `duration` is a time-to-live in
    the runtime's logical clock; only an `expiring` claim is expired by it (as in the spec)."""
    claim_id: str
    owner_scope: str
    cache_identity: CacheIdentity
    object_id: str
    predicate: Predicate
    footprint_blocks: int
    protection_mode: Mode
    duration: Optional[int] = None

    def to_json(self) -> Dict[str, Any]:
        return {"claim_id": self.claim_id, "owner_scope": self.owner_scope,
                "cache_identity": self.cache_identity.to_json(), "object_id": self.object_id,
                "predicate": self.predicate.to_json(), "footprint_blocks": self.footprint_blocks,
                "protection_mode": MODE_NAMES[self.protection_mode],
                "duration": self.duration}


def _int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def validate_claim(spec: ClaimSpec, object_blocks: Optional[int] = None) -> ClaimSpec:
    """Raise ClaimError naming the first problem; return the spec with its mode parsed.
    `object_blocks` is the length of the registered object, when the runtime knows it."""
    if not isinstance(spec.claim_id, str) or not spec.claim_id:
        raise ClaimError("claim_id must be a non-empty string")
    if not isinstance(spec.owner_scope, str) or not spec.owner_scope:
        raise ClaimError(f"claim {spec.claim_id}: owner_scope must be a non-empty string")
    if not isinstance(spec.object_id, str) or not spec.object_id:
        raise ClaimError(f"claim {spec.claim_id}: object_id must be a non-empty string")
    if not isinstance(spec.cache_identity, CacheIdentity):
        raise ClaimError(f"claim {spec.claim_id}: cache_identity is required")
    ci = spec.cache_identity
    for name in ("key_domain", "model_id", "tokenizer_id"):
        if not isinstance(getattr(ci, name), str) or not getattr(ci, name):
            raise ClaimError(f"claim {spec.claim_id}: cache_identity.{name} is required")
    if not _int(ci.block_size) or ci.block_size <= 0:
        raise ClaimError(f"claim {spec.claim_id}: cache_identity.block_size must be > 0")
    if not _int(spec.footprint_blocks) or spec.footprint_blocks <= 0:
        raise ClaimError(f"claim {spec.claim_id}: footprint_blocks must be > 0")
    mode = parse_mode(spec.protection_mode)
    p = spec.predicate
    if not isinstance(p, Predicate) or not _int(p.start) or not _int(p.k):
        raise ClaimError(f"claim {spec.claim_id}: materialization_predicate is required")
    if p.start < 0 or p.k < 1:
        raise ClaimError(f"claim {spec.claim_id}: predicate must cover at least 1 block "
                         f"from a position >= 0")
    length = spec.footprint_blocks if object_blocks is None else min(spec.footprint_blocks,
                                                                      object_blocks)
    if p.end > length:
        raise ClaimError(f"claim {spec.claim_id}: predicate needs {p.end} blocks but the "
                         f"object has {length}")
    if spec.duration is not None and (not _int(spec.duration) or spec.duration <= 0):
        raise ClaimError(f"claim {spec.claim_id}: duration must be > 0 when given")
    if mode == Mode.EXPIRING and spec.duration is None:
        raise ClaimError(f"claim {spec.claim_id}: an expiring claim needs a duration")
    if mode is not spec.protection_mode:
        spec = ClaimSpec(spec.claim_id, spec.owner_scope, spec.cache_identity, spec.object_id,
                         spec.predicate, spec.footprint_blocks, mode, spec.duration)
    return spec


def reserved_footprint(records) -> int:
    """Footprint of the accepted protecting claims among `records` (objects with `.status`
    and `.spec`): what acceptance control counts against the cap (spec: reserved_footprint)."""
    return sum(c.spec.footprint_blocks for c in records
               if c.status in RESPONSIBLE and c.spec.protection_mode in PROTECTED_MODES)


def acceptance_decision(spec: "ClaimSpec", reserved: int, cap: int) -> Tuple[bool, str]:
    """Acceptance control, shared by every runtime (the runtime side of the spec's
    accept_allowed): fail closed on modes with no modelled tier; a protecting claim counts
    against the cap so active work keeps its headroom; never half-accepted."""
    if spec.protection_mode in UNMODELLED_MODES:
        return False, f"protection mode {MODE_NAMES[spec.protection_mode]} has no tier here"
    if spec.protection_mode in PROTECTED_MODES:
        if spec.footprint_blocks > cap:
            return False, f"footprint {spec.footprint_blocks} exceeds the protected cap {cap}"
        if reserved + spec.footprint_blocks > cap:
            return False, f"protected footprint would be {reserved + spec.footprint_blocks} > cap {cap}"
    return True, "within cap"


@dataclass(frozen=True)
class Decision:
    """A runtime's answer to a submitted claim: accepted or rejected, and why."""
    claim_id: str
    accepted: bool
    reason: str


def decide_claim(ledger, claim_id: str) -> Decision:
    """Take the acceptance decision on a pending claim and carry it out: `ledger` is any
    runtime with acceptance(), accept() and reject() (the MicroRuntime, the vLLM arbiter)."""
    ok, why = ledger.acceptance(claim_id)
    if ok:
        ledger.accept(claim_id)
    else:
        ledger.reject(claim_id, why)
    return Decision(claim_id, ok, why)
