"""Runtime descriptors (TOML): what each contract element is lowered to on one runtime
version, which protection primitive each mode uses, and the evidence offered.

Every value comes from a closed vocabulary, so the checker's rules can read it; an unknown
word is bad input (exit 2), never silently ignored."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

try:                                    # Python 3.11+
    import tomllib
except ModuleNotFoundError:             # Python 3.10: the same parser, packaged
    import tomli as tomllib

from kvclaims.errors import UsageError
from kvclaims.spec.obligations import OBLIGATIONS

from .bundles import MODE_NAMES

CLASSES = ("native_conformance", "adapter_observational", "adapter_policy",
           "approximation_substrate", "rejected_mapping", "unknown_evidence")
INTEGRATIONS = ("native", "adapter_policy", "adapter_observational", "substrate")

# Protection primitives.  A pin keeps the claimed blocks out of the evictable set of the
# usable pool; a preference only reorders eviction (O7); the rest keep nothing resident in
# the pool at all (another tier, another worker, nothing).
PIN = ("pin", "active_no_evict")
PREFERENCE_ONLY = ("priority", "retention_duration", "lru")
NO_RESIDENCY = ("tier_pin", "offload", "route", "none")
PROTECTION = PIN + PREFERENCE_ONLY + NO_RESIDENCY

# Contract element -> its vocabulary: value -> None when the value can carry the element, or
# (rule, obligations) when counting it as evidence for those obligations is a bad lowering.
ELEMENTS: Dict[str, Dict[str, Optional[Tuple[str, Tuple[str, ...]]]]] = {
    "acceptance": {"claim_decision": None, "none": None,
                   "post_hoc": ("post-hoc-claim-naming", ("O6", "O9"))},
    "identity": {"claim_id": None, "none": None,
                 "post_hoc": ("post-hoc-claim-naming", ("O6", "O9"))},
    "predicate": {"logical_positions": None, "none": None,
                  "block_count": ("block-count-predicate", ("O5",))},
    "protection": {p: None for p in PROTECTION},
    "conflict_outcome": {"claim_attributed": None, "none": None,
                         "silent_eviction": ("silent-eviction", ("O3",)),
                         "unattributed": ("outcome-names-no-claim", ("O3", "O8"))},
    "events": {"claim_scoped": None, "none": None,
               "block_scoped": ("events-without-claim-identity", ("O6", "O9"))},
    "reuse_domain": {"cache_identity": None, "salted_hash": None, "none": None,
                     "global": ("reuse-crosses-identities", ("O10",))},
    "restoration": {"restore_event": None, "none": None,
                    "fallback_recompute": ("fallback-recompute-as-restoration", ("O9",))},
}
# Elements that only concern some modes: restoration is owed by offloadable claims alone.
ELEMENT_MODES = {"restoration": ("offloadable",)}

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class Descriptor:
    path: Path
    runtime: str
    version: str
    title: str
    integration: str
    targets: Tuple[str, ...]
    lowering: Dict[str, str]
    modes: Dict[str, str]                       # mode -> protection primitive
    anchors: List[Dict[str, Any]]
    citations: List[Dict[str, Any]]
    expect: Dict[str, Dict[str, str]] = field(default_factory=dict)
    notes: str = ""


def _str(d, key, where, default=None) -> str:
    v = d.get(key, default)
    if not isinstance(v, str) or not v.strip():
        raise UsageError(f"{where}: '{key}' must be a non-empty string")
    return v


def _choice(v, allowed, where) -> str:
    if v not in allowed:
        raise UsageError(f"{where}: {v!r} is not one of {', '.join(allowed)}")
    return v


def _names(v, allowed, where) -> List[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise UsageError(f"{where}: must be a list of strings")
    for x in v:
        _choice(x, allowed, where)
    return v


def _tables(d, key, w) -> Dict[str, Dict[str, Any]]:
    """An array of tables ([[key]]), each keyed by where it is for error messages."""
    v = d.get(key, [])
    if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
        raise UsageError(f"{w}: [[{key}]] must be an array of tables")
    return {f"{w} {key} {i + 1}": x for i, x in enumerate(v)}


def _per_mode(d, key, w, what) -> Dict[str, Any]:
    """A table keyed by protection mode."""
    v = d.get(key, {})
    if not isinstance(v, dict):
        raise UsageError(f"{w}: [{key}] must be a table of mode = {what}")
    for m in v:
        _choice(m, MODE_NAMES, f"{w} {key}")
    return v


def load(path) -> Descriptor:
    p = Path(path)
    try:
        d = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"no such descriptor: {path}")
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, not a descriptor")
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: not valid TOML: {e}")
    w = p.name
    known = {"runtime", "version", "title", "integration", "targets", "lowering", "modes",
             "anchor", "citation", "expect", "notes"}
    extra = sorted(set(d) - known)
    if extra:
        raise UsageError(f"{w}: unknown key(s) {', '.join(extra)}")
    lowering = d.get("lowering")
    if not isinstance(lowering, dict):
        raise UsageError(f"{w}: missing [lowering] table")
    for el, vocab in ELEMENTS.items():
        if el not in lowering:
            raise UsageError(f"{w}: [lowering] misses '{el}'")
        _choice(lowering[el], tuple(vocab), f"{w} lowering.{el}")
    extra = sorted(set(lowering) - set(ELEMENTS))
    if extra:
        raise UsageError(f"{w}: [lowering] has unknown element(s) {', '.join(extra)}")
    modes = _per_mode(d, "modes", w, "primitive")
    for m, prim in modes.items():
        _choice(prim, PROTECTION, f"{w} modes.{m}")
    obligations = tuple(OBLIGATIONS)
    anchors = _tables(d, "anchor", w)
    for where, a in anchors.items():
        _str(a, "file", where)
        if not _HEX64.match(str(a.get("sha256", ""))):
            raise UsageError(f"{where}: 'sha256' must be 64 lowercase hex digits")
    citations = _tables(d, "citation", w)
    for where, c in citations.items():
        for k in ("url", "version", "where"):
            _str(c, k, where)
        if not str(c["url"]).startswith(("https://", "http://")):
            raise UsageError(f"{where}: 'url' must be an http(s) address")
        _names(c.get("obligations", []), obligations, f"{where} obligations")
        _names(c.get("elements", []), tuple(ELEMENTS), f"{where} elements")
        _names(c.get("modes", list(MODE_NAMES)), MODE_NAMES, f"{where} modes")
        if not c.get("obligations") and not c.get("elements"):
            raise UsageError(f"{where}: names neither obligations nor elements")
    expect = _per_mode(d, "expect", w, "{class, rule}")
    for m, e in expect.items():
        if not isinstance(e, dict):
            raise UsageError(f"{w} expect.{m}: must be a table with 'class'")
        _choice(e.get("class"), CLASSES, f"{w} expect.{m}.class")
    targets = d.get("targets", [])
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise UsageError(f"{w}: 'targets' must be a list of target names")
    from kvclaims.checker.litmus import TARGETS
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        raise UsageError(f"{w}: unknown target(s) {', '.join(unknown)} (choose from "
                         f"{', '.join(TARGETS)})")
    if anchors and not targets:
        raise UsageError(f"{w}: machine evidence anchors need 'targets' (which of our "
                         f"targets ran this runtime)")
    return Descriptor(p, _str(d, "runtime", w), _str(d, "version", w),
                      str(d.get("title", "")),
                      _choice(d.get("integration"), INTEGRATIONS, f"{w} integration"),
                      tuple(targets), dict(lowering), dict(modes), list(anchors.values()),
                      list(citations.values()),
                      expect, str(d.get("notes", "")))
