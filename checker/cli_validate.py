"""`kvclaims validate TRACE.jsonl [--format auto|kvclaims|artifact-v1] [--policy P[,Q]]
[--json [FILE]] [--out DIR]`: trace validation of a runtime's telemetry against the spec.

Prints which policies the trace is a behaviour of and, per obligation, holds / violated at
event N / not evidenced; writes the shortest failing prefix as an ITF trace under DIR (default
out/validate/<trace>/) that `kvclaims explore --replay` opens.  Exit 0: nothing violated; 12:
an obligation is violated; 2: the trace is not readable (malformed, truncated, unknown schema
version), one line on stderr."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional

from kvclaims.errors import EXIT_OK, EXIT_UNEXPECTED, UsageError
from kvclaims.spec.policy import POLICIES
from kvclaims.spec.vocab import Mode

from .trace_read import FORMATS
from .validate import Report, validate


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def failing_prefix(rep: Report, out_dir: Path) -> Optional[Path]:
    """The shortest prefix of the trace that breaks the first violated obligation, as the spec
    steps that produce it (ITF).  When the spec cannot produce the breaking event at all, the
    prefix up to it is written with no goal: it replays, and the next event is the breach."""
    from .bmc import Trace
    from .itf import write_itf
    bad = [v for v in rep.obligations if v.verdict == "violated"]
    if not bad:
        return None
    first = min(bad, key=lambda v: (v.event or 0, int(v.obligation[1:])))
    r = rep.replays[rep.witness]
    hit = r.violated.get(first.obligation)
    if hit is not None and hit[0] is not None and \
            rep.imported.events[hit[0]].get("line", hit[0] + 1) == first.event:
        node, goal = hit[1], first.obligation
    else:
        node, goal = r.last, ""
    steps, states = node.path()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{first.obligation}.itf.json"
    write_itf(Trace(rep.witness, goal, rep.inferred.cfg, steps, states), path,
              source="kvclaims validate",
              description=f"{rep.trace}: {first.obligation} violated at event {first.event} "
                          f"({first.reason})")
    return path


def _table(rep: Report, itf: Optional[Path]) -> str:
    inf = rep.inferred
    imp = rep.imported
    lines = [f"{rep.trace}: {rep.format}, {rep.events} events -> {len(imp.events)} in the "
             f"spec's vocabulary ({len(imp.unknown)} unknown, {len(imp.unmodelled)} unmodelled)"]
    cl = []
    for cid, i in inf.claims.items():
        cc = inf.cfg.claims[i]
        cl.append(f"{cid} ({cc.footprint} blocks, positions {cc.pred_start}.."
                  f"{cc.pred_start + cc.pred_len - 1}, {Mode(cc.mode).name.lower()})")
    rq = [f"{rid} ({inf.cfg.requests[j].need} live)" for rid, j in inf.requests.items()]
    lines.append(f"fixed by the trace: usable {inf.cfg.usable}, cap {inf.cfg.cap}; claims: "
                 f"{', '.join(cl) or 'none'}; requests: {', '.join(rq) or 'none'}")
    if inf.unfixed:
        lines.append("not fixed by the trace: " + "; ".join(
            f"{k} of {', '.join(v)}" for k, v in inf.unfixed.items()))
    rec = rep.reconstruction
    for cid, c in rec.claims.items():
        lines.append(f"observer: claim {cid}: {' > '.join(t for _, t in c.history)} => "
                     f"{c.status}")
    if rec.requests:
        lines.append("observer: requests " + ", ".join(f"{k} => {r.status}"
                                                      for k, r in rec.requests.items()))
    for n, name in imp.unknown:
        lines.append(f"unknown event {name!r} at event {n} (not validated)")
    for n, name in imp.unmodelled[:5]:
        lines.append(f"unmodelled event {name!r} at event {n}")
    for note in imp.notes:
        lines.append(f"note: {note}")
    lines.append("")
    lines.append(f"{'policy':16} {'consistent':11} first event it cannot produce")
    for p, d in rep.policies.items():
        lines.append(f"{p:16} {'yes' if d['consistent'] else 'no':11} "
                     + ("" if d["consistent"] else
                        f"event {d['event']} ({d['obligation']}): {d['reason']}"))
    lines.append(f"consistent with: {', '.join(rep.consistent_with) or 'no policy'}"
                 + (f"; not with: {', '.join(p for p in rep.policies if p not in rep.consistent_with)}"
                    if len(rep.consistent_with) < len(rep.policies) else ""))
    lines.append("")
    lines.append(f"{'obligation':10} {'verdict':14} {'event':>6}  {'claim':14} reason")
    for v in rep.obligations:
        lines.append(f"{v.obligation:10} {v.verdict:14} {v.event if v.event else '':>6}  "
                     f"{v.claim or '':14} {v.reason}")
    if itf is not None:
        lines.append(f"\nshortest failing prefix: {itf} (kvclaims explore --replay {itf})")
    return "\n".join(lines)


def main(argv) -> int:
    ap = _Parser(prog="kvclaims validate", description=__doc__.splitlines()[0])
    ap.add_argument("trace", help="telemetry, JSON Lines")
    ap.add_argument("--format", default="auto", choices=FORMATS)
    ap.add_argument("--policy", help="policies to validate against (comma-separated; "
                                     "default: every policy)")
    ap.add_argument("--json", nargs="?", const="-", metavar="FILE",
                    help="write the verdicts as JSON to FILE (stdout without FILE)")
    ap.add_argument("--out", help="directory for the failing prefix (default "
                                  "out/validate/<trace name>)")
    a = ap.parse_args(argv)
    pols = None
    if a.policy:
        pols = [p.strip() for p in a.policy.split(",") if p.strip()]
        bad = [p for p in pols if p not in POLICIES]
        if bad or not pols:
            raise UsageError(f"unknown policy '{(bad or [a.policy])[0]}' "
                             f"(choose from {', '.join(POLICIES)})")
    try:
        rep = validate(a.trace, a.format, pols)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        # a field of the wrong kind deep in an event: bad input, not an internal error
        raise UsageError(f"{a.trace}: malformed trace ({type(e).__name__}: {e})") from None
    out_dir = Path(a.out) if a.out else Path("out/validate") / Path(a.trace).stem
    itf = failing_prefix(rep, out_dir)
    doc = rep.to_json()
    doc["failing_prefix_itf"] = str(itf) if itf else None
    if a.json == "-":
        print(json.dumps(doc, indent=1))
    else:
        if a.json:
            Path(a.json).write_text(json.dumps(doc, indent=1) + "\n")
        print(_table(rep, itf))
    return EXIT_UNEXPECTED if rep.violated else EXIT_OK
