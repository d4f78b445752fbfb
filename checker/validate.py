"""`kvclaims validate`'s verdicts: per policy, whether the trace is one of its behaviours; per
obligation, holds / violated at event N / not evidenced.

Three sources, each used for what it can decide:
  - trace validation (checker/trace_validate.py): the spec's actions under each policy,
    constrained by the events; the obligations are read on the states it reaches;
  - the observer (model/observer.py, reused as is): findings it makes from events alone;
  - evidence: an obligation whose judgement needs a field the trace does not carry is "not
    evidenced", failing closed, unless a violation was shown anyway.
"Event N" is the line of the trace file the event came from."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from kvclaims.model.observer import Reconstruction, reconstruct
from kvclaims.spec.obligations import OBLIGATIONS
from kvclaims.spec.policy import POLICIES

from .trace_infer import CLAIM_TYPES, REQUEST_TYPES, Inferred, infer
from .trace_read import ImportedTrace, load_trace
from .trace_segments import cut
from .trace_validate import Replay, culprit, replay

# conformant policies first: when a conformant policy explains the trace, its (proved)
# obligations are the ones read
ORDER = ("hard_refuse", "hard_demote", "native", "soft_priority", "write_no_admit",
         "block_count", "late_release", "misattribute")
# observer finding kind -> the obligation it shows broken (model/observer.py's docstring)
FINDINGS = {"protected_victim": "O3", "unreported_loss": "O5", "release_after_loss": "O4",
            "misattribution": "O8", "live_underreported": "O2", "lifecycle": "O9"}


@dataclass
class Verdict:
    obligation: str
    verdict: str                 # holds | violated | not_evidenced
    event: Optional[int] = None
    claim: Optional[str] = None
    reason: str = ""

    def to_json(self) -> Dict[str, Any]:
        return {"obligation": self.obligation, "verdict": self.verdict, "event": self.event,
                "claim": self.claim, "reason": self.reason}


@dataclass
class Report:
    trace: str
    format: str
    events: int
    consistent_with: List[str]
    obligations: List[Verdict]
    policies: Dict[str, Dict[str, Any]]
    witness: str
    imported: ImportedTrace
    inferred: Inferred
    # the observer's reconstruction from the events alone (claims, conflicts, outcomes)
    reconstruction: Reconstruction
    replays: Dict[str, Replay] = field(default_factory=dict)

    @property
    def violated(self) -> bool:
        return any(v.verdict == "violated" for v in self.obligations)

    def to_json(self) -> Dict[str, Any]:
        return {"trace": self.trace, "format": self.format, "events": self.events,
                "consistent_with": self.consistent_with,
                "obligations": [v.to_json() for v in self.obligations],
                "policies": self.policies, "witness_policy": self.witness,
                "unknown_events": [{"event": n, "name": e} for n, e in self.imported.unknown],
                "unmodelled_events": [{"event": n, "name": e}
                                      for n, e in self.imported.unmodelled],
                "notes": self.imported.notes, "inferred": self.inferred.to_json(),
                "reconstruction": {
                    "claims": {k: {"status": c.status, "history": [t for _, t in c.history]}
                               for k, c in self.reconstruction.claims.items()},
                    "requests": {k: r.status
                                 for k, r in self.reconstruction.requests.items()}}}


def _line(events, n: int) -> int:
    return events[n].get("line", n + 1)


def missing_evidence(imp: ImportedTrace, inf: Inferred) -> Dict[str, str]:
    """Obligation -> what the trace lacks to judge it (fail closed)."""
    ev = [e for e in imp.events if not e.get("implied")]
    out: Dict[str, str] = {}
    uf = inf.unfixed
    if "live_blocks" in uf or any(e["type"] == "request_admitted" and e.get("live_blocks")
                                  is None for e in ev):
        out["O2"] = "an admission does not report its live blocks"
    claimed = set(inf.claims.values())
    if any(e["type"] == "victim" and e.get("object_id") is not None
           and inf.objects[e["object_id"]] in claimed and e.get("logical_position") is None
           and e.get("from_head") is None for e in ev):
        out["O5"] = "victims of claimed blocks carry no logical block position"
    if "predicate" in uf:
        out["O5"] = f"no materialization predicate for claim(s) {', '.join(uf['predicate'])}"
    if imp.unknown:
        out["O6"] = f"{len(imp.unknown)} event(s) of unknown type (first: " \
                    f"{imp.unknown[0][1]!r} at event {imp.unknown[0][0]})"
    out["O7"] = "telemetry does not name the primitive a claim is lowered onto"
    if any(e["type"] == "conflict" and e.get("arbiter_action") in ("defer", "refuse")
           and e.get("blocking_claim_ids") is None for e in ev):
        out["O8"] = "a deferral or refusal carries no blocking_claim_ids"
    if imp.unmodelled:
        out["O9"] = f"{len(imp.unmodelled)} offload/live-bounding event(s) the spec does not " \
                    f"model (first: {imp.unmodelled[0][1]!r} at event {imp.unmodelled[0][0]})"
    if "response_ticks" in uf:
        out["O14"] = "a deferral states no response bound (response_ticks)"
    if "cache_identity" in uf:
        out["O10"] = f"claim(s) {', '.join(uf['cache_identity'])} carry no cache identity"
    elif any(e["type"] in ("claim_released", "release_denied") and e.get("actor") is None
             and e.get("owner_scope") is None for e in ev):
        out["O10"] = "a release does not name who asked for it"
    return out


def legible(events: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Events the observer can file: one without the claim or request id it is about is an
    O6 breach already, and the observer would have nothing to file it under."""
    return [e for e in events
            if not (e["type"] in CLAIM_TYPES and e.get("claim_id") is None)
            and not (e["type"] in REQUEST_TYPES and e.get("request_id") is None)]


def verdicts(imp: ImportedTrace, inf: Inferred, rep: Replay, pol,
             rec: Reconstruction) -> List[Verdict]:
    events = imp.events
    found: Dict[str, Verdict] = {}
    for ob, (n, node) in rep.violated.items():
        i, j = culprit(ob, inf.cfg, pol, node.state)
        who = inf.claim_name(i) if i is not None else (
            f"request {inf.request_name(j)}" if j is not None else None)
        found[ob] = Verdict(ob, "violated", _line(events, n), who if i is not None else None,
                            f"{OBLIGATIONS[ob].title}: broken in every behaviour of "
                            f"{pol.name} that produces the trace up to here"
                            + (f" ({who})" if who else ""))
    if not rep.consistent:
        ob = rep.stuck_obligation
        e = events[rep.stuck]
        v = Verdict(ob, "violated", _line(events, rep.stuck), e.get("claim_id"),
                    f"no behaviour of {pol.name} produces this {e['type']}: {rep.why}")
        if ob not in found or found[ob].event > v.event:
            found[ob] = v
    # once the spec explains the whole trace its reading is the judgement (the observer would
    # call a loss announced late an O3 victim, where the spec sees O4); past the point where it
    # stops, the observer's findings still show what else the events break
    line_of = {e.get("seq"): e.get("line", e.get("seq")) for e in events}
    for f in ([] if rep.consistent else rec.findings):
        ob = FINDINGS.get(f.kind)
        if ob is None:
            continue
        line = line_of.get(f.seq, f.seq)
        if ob not in found or found[ob].event > line:
            found[ob] = Verdict(ob, "violated", line, f.claim_id, f"observer: {f.message}")
    lacking = missing_evidence(imp, inf)
    out = []
    for ob in OBLIGATIONS:
        if ob in found:
            out.append(found[ob])
        elif not rep.consistent:
            out.append(Verdict(ob, "not_evidenced", None, None,
                               f"validation under {pol.name} stopped at event "
                               f"{_line(events, rep.stuck)}"))
        elif ob in lacking:
            out.append(Verdict(ob, "not_evidenced", None, None, lacking[ob]))
        else:
            any_claim = any(e["type"] == "claim_accepted" for e in events)
            out.append(Verdict(ob, "holds", None, None,
                               "" if any_claim else "no claim is accepted in the trace"))
    return out


def validate(path: str, fmt: str = "auto", policies: Optional[List[str]] = None) -> Report:
    imp = load_trace(path, fmt)
    return validate_imported(imp, policies)


def validate_imported(imp: ImportedTrace, policies: Optional[List[str]] = None) -> Report:
    inf = infer(imp.events)
    segs = cut(imp.events, inf)
    names = [p for p in ORDER if policies is None or p in policies]
    reps = {p: replay(inf.cfg, POLICIES[p], segs, imp.events, inf) for p in names}
    consistent = [p for p in names if reps[p].consistent]
    if consistent:
        witness = consistent[0]
    else:   # the policy that explains the longest prefix
        witness = max(names, key=lambda p: (reps[p].segments_done, -names.index(p)))
    rec = reconstruct(legible(imp.events))
    obs = verdicts(imp, inf, reps[witness], POLICIES[witness], rec)
    pols = {p: ({"consistent": True} if r.consistent else
                {"consistent": False, "event": _line(imp.events, r.stuck),
                 "obligation": r.stuck_obligation, "reason": r.why})
            for p, r in reps.items()}
    return Report(imp.path, imp.format, imp.source_events, consistent, obs, pols, witness, imp,
                  inf, rec, reps)
