"""The fail-closed classification of a (runtime, mode) pair (docs/CONTRACT.md section 9).

Order of the rules, each one failing closed:
1. a mode the descriptor does not lower has nothing to classify: unknown_evidence;
2. a lowering that cannot be sound is rejected whatever its evidence: a primitive that only
   changes eviction preference, or keeps nothing resident in the pool, for a protecting mode
   (O7; O3), one our harness caught breaking an obligation of the mode (a passing case of a
   bad policy in its evidence), or an element counted as evidence for an obligation it cannot
   carry (block-count predicate, post-hoc claim naming, events without claim identity, an
   outcome naming no claim, fallback recompute as restoration);
3. evidence that no longer checks out (anchored file missing, digest or version or target
   differing, a citation of another version) makes the row unknown_evidence;
4. an obligation of the mode's bundle with no evidence caps the row at approximation_substrate
   when the protection primitive itself is evidenced, else unknown_evidence;
5. an approximate lowering (O7: preference for a soft claim) caps it at approximation_substrate;
6. a complete bundle is native_conformance only for an in-runtime lowering with machine
   evidence for every obligation; adapters get their adapter class, a bare substrate
   approximation_substrate."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List

from kvclaims.spec.vocab import Lowering, Mode, Primitive, lowering_verdict

from .bundles import BUNDLES, MODE_NAMES
from .descriptor import ELEMENT_MODES, ELEMENTS, NO_RESIDENCY, PIN, Descriptor
from .evidence import AnchorCheck, citation_problem


@dataclass
class Row:
    runtime: str
    version: str
    mode: str
    cls: str
    rules: List[str]
    obligations: Dict[str, Dict[str, str]]     # O -> {"status", "by"}
    primitive: str = ""
    descriptor: str = ""
    expected: Dict[str, str] = field(default_factory=dict)

    @property
    def mismatch(self) -> str:
        """Why this row differs from the descriptor's expectation ('' when it does not)."""
        e = self.expected
        if not e:
            return ""
        if e["class"] != self.cls:
            return f"expected {e['class']}, got {self.cls} ({'; '.join(self.rules)})"
        if e.get("rule") and not any(r == e["rule"] or r.startswith(e["rule"] + ":")
                                     for r in self.rules):
            return f"expected rule {e['rule']}, got {'; '.join(self.rules)}"
        return ""

    def to_json(self):
        return {"runtime": self.runtime, "version": self.version, "mode": self.mode,
                "class": self.cls, "rules": self.rules, "obligations": self.obligations,
                "primitive": self.primitive, "descriptor": self.descriptor}


def primitive_class(p: str) -> Primitive:
    """The spec's O7 vocabulary: only a pin holds blocks out of the evictable set."""
    return Primitive.PIN if p in PIN else Primitive.PREFERENCE


def _cites(c, mode: str) -> bool:
    return mode in c.get("modes", MODE_NAMES)


def classify(d: Descriptor, mode: str, anchors: List[AnchorCheck]) -> Row:
    bundle = BUNDLES[mode]
    row = Row(d.runtime, d.version, mode, "unknown_evidence", [], {},
              d.modes.get(mode, ""), str(d.path), d.expect.get(mode, {}))
    if mode not in d.modes:
        row.rules = ["mode-not-lowered"]
        row.obligations = {o: {"status": "missing", "by": ""} for o in bundle}
        return row
    prim = d.modes[mode]
    cites = [c for c in d.citations if _cites(c, mode)]
    offered = {o for c in cites for o in c.get("obligations", [])}
    # an anchored result file offers whatever it witnesses (a bad element counted that way is
    # as much a bad lowering as one cited for it)
    offered |= {o for o in bundle if any(a.evidences(mode, o) for a in anchors)}

    # 2. lowerings that cannot be sound
    rejected = []
    lv = lowering_verdict(primitive_class(prim), Mode[mode.upper()])
    if lv == Lowering.UNSOUND:
        rejected.append("O3-no-residency-primitive" if prim in NO_RESIDENCY
                        else "O7-preference-as-protected-claim")
    # machine evidence that this runtime, under pressure, breaks obligations of this mode
    shown = sorted({o for a in anchors if a.ok for o in a.violations.get(mode, ())}
                   & set(bundle), key=bundle.index)
    if shown:
        rejected.append(f"evidence-shows-violation:{','.join(shown)}")
    for el, vocab in ELEMENTS.items():
        if mode not in ELEMENT_MODES.get(el, MODE_NAMES):
            continue
        bad = vocab[d.lowering[el]]
        if bad and offered & set(bad[1]) & set(bundle):
            rejected.append(f"{bad[0]}:{','.join(sorted(offered & set(bad[1])))}")

    # evidence, obligation by obligation
    stale = [f"{a.rule}:{a.file}" for a in anchors if not a.ok]
    for o in bundle:
        machine = [a.file for a in anchors if a.evidences(mode, o)]
        good = [c["url"] for c in cites if o in c.get("obligations", [])
                and not citation_problem(c, d.version)]
        bad = [citation_problem(c, d.version) for c in cites if o in c.get("obligations", [])
               and citation_problem(c, d.version)]
        if machine:
            row.obligations[o] = {"status": "machine", "by": machine[0]}
        elif good:
            row.obligations[o] = {"status": "cited", "by": good[0]}
        elif bad:
            row.obligations[o] = {"status": "stale", "by": bad[0][1]}
            stale.append(f"{bad[0][0]}:{o}")
        else:
            row.obligations[o] = {"status": "missing", "by": ""}
    if rejected:
        row.cls, row.rules = "rejected_mapping", rejected
        return row
    if stale:
        row.cls, row.rules = "unknown_evidence", stale
        return row
    missing = [o for o in bundle if row.obligations[o]["status"] == "missing"]
    approx = ["O7-approximate-lowering"] if lv == Lowering.APPROXIMATE else []
    if missing:
        primitive_shown = any(a.evidences(mode, o) for a in anchors for o in bundle) or any(
            "protection" in c.get("elements", []) and not citation_problem(c, d.version)
            for c in cites)
        row.cls = "approximation_substrate" if primitive_shown else "unknown_evidence"
        row.rules = approx + [f"no-evidence:{','.join(missing)}"]
        return row
    if approx:
        row.cls, row.rules = "approximation_substrate", approx
        return row
    curated = [o for o in bundle if row.obligations[o]["status"] != "machine"]
    if d.integration == "native":
        if curated:
            row.cls = "approximation_substrate"
            row.rules = [f"native-needs-machine-evidence:{','.join(curated)}"]
        else:
            row.cls, row.rules = "native_conformance", ["all-obligations-machine-evidenced"]
    elif d.integration == "adapter_policy":
        row.cls, row.rules = "adapter_policy", ["adapter-enforced-under-controlled-pressure"]
    elif d.integration == "adapter_observational":
        row.cls, row.rules = "adapter_observational", ["adapter-observes-runtime-events"]
    else:
        row.cls, row.rules = "approximation_substrate", ["substrate-without-claim-layer"]
    return row

