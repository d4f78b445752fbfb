"""`kvclaims check`: prove or refute every (policy, obligation), catch the seeded mutations,
witness the non-vacuity goals, compare with the manifest.

Prints a policy x obligation table, writes out/check-spec.json (and one trace per
counterexample under out/<policy>/<obligation>/), exits 0 when everything matches the
manifest, 12 when a verdict differs, 2 on bad usage."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import List

from kvclaims.errors import EXIT_OK, EXIT_UNEXPECTED, UsageError, shown
from kvclaims.limits import MAX_SLOTS
from kvclaims.options import Parser, float_in, int_in
from kvclaims.outputs import check_output_dir, check_output_file, write_atomic
from kvclaims.spec.obligations import CHECKED
from kvclaims.spec.policy import CONFORMANT, MUTATIONS, POLICIES

from . import manifest as mf
from .run import Settings, run_all
from .traces import save_counterexample

# BMC depths beyond this are hours of solver time per query; worker processes beyond this
# only contend for the same cores.
MAX_DEPTH = 64
MAX_JOBS = 64


def _names(values: List[str], known, what: str) -> List[str]:
    out = []
    for v in values:
        for n in v.split(","):
            n = n.strip()
            if n not in known:
                raise UsageError(f"unknown {what} {shown(n)} (choose from {', '.join(known)})")
            if n not in out:
                out.append(n)
    return out


def parser() -> Parser:
    p = Parser(prog="kvclaims check", description=__doc__)
    p.add_argument("--policy", action="append", default=[],
                   help="policy to check (repeatable or comma-separated; default: all)")
    p.add_argument("--obligation", action="append", default=[],
                   help="obligation id O1..O16 or S1..S6 (repeatable or comma-separated; "
                        "default: all)")
    p.add_argument("--mutation", action="append", default=[],
                   help="seeded mutation to check (default: all, unless --policy is given)")
    p.add_argument("--no-mutations", action="store_true", help="skip the seeded mutations")
    p.add_argument("--no-sometimes", action="store_true", help="skip the non-vacuity goals")
    p.add_argument("--depth", type=int_in(0, MAX_DEPTH), default=8,
                   help=f"BMC bound in steps (0..{MAX_DEPTH}, default 8)")
    p.add_argument("--mutation-depth", type=int_in(0, MAX_DEPTH), default=6,
                   help=f"BMC bound for the seeded mutations (0..{MAX_DEPTH}, default 6: "
                        "every kill in the manifest is at most 6 steps)")
    p.add_argument("--timeout", type=float_in(0.001, 86400), default=60.0,
                   help="seconds per solver query (0.001..86400, default 60)")
    p.add_argument("--claims", type=int_in(1, MAX_SLOTS), default=3,
                   help=f"claim slots (1..{MAX_SLOTS}, default 3)")
    p.add_argument("--requests", type=int_in(1, MAX_SLOTS), default=3,
                   help=f"request slots (1..{MAX_SLOTS}, default 3)")
    p.add_argument("--no-any", action="store_true",
                   help="skip the proofs for any number of claims and requests (cutoff model)")
    p.add_argument("--jobs", type=int_in(1, MAX_JOBS), default=2,
                   help=f"worker processes (1..{MAX_JOBS}, default 2)")
    p.add_argument("--manifest", type=Path, default=mf.DEFAULT_PATH,
                   help="expected verdicts (default: checker/manifest.json)")
    p.add_argument("--out", type=Path, default=Path("out"),
                   help="directory for check-spec.json and counterexamples (default out/)")
    p.add_argument("--write-manifest", action="store_true",
                   help="record this run's results as the expected ones (review the diff!)")
    return p


def _cell(v) -> str:
    if v.verdict == "proved":
        return f"proved {v.seconds:5.2f}s"
    if v.verdict == "violated":
        return f"viol@{v.depth} {v.seconds:5.2f}s"
    return "unknown"


def _table(runs, obligations) -> str:
    w = 14
    head = f"{'policy (slots)':<34}" + "".join(f"{o:<{w}}" for o in obligations) + "total"
    lines = [head, "-" * len(head)]
    for r in runs:
        slots = r.verdicts[0].slots if r.verdicts else ""
        lines.append(f"{r.policy + ' (' + slots + ')':<34}"
                     + "".join(f"{_cell(v):<{w}}" for v in r.verdicts) + f"{r.seconds:.1f}s")
        if r.cutoff is not None:
            lines.append(f"{r.policy + ' (any)':<34}"
                         + "".join(f"{_cell(v):<{w}}" for v in r.any_verdicts)
                         + f"{r.cutoff.seconds:.1f}s")
    return "\n".join(lines)


def _reach_line(s, bound: int) -> str:
    if s.depth is not None:
        return f"reached at depth {s.depth}"
    if s.unreachable is None:
        return f"not reached within {bound} steps (unknown)"
    lemma = f", lemma: {s.unreachable.lemma}" if s.unreachable.lemma else ""
    return f"unreachable (proved: inductive {s.unreachable.slots}{lemma})"


def main(argv) -> int:
    a = parser().parse_args(argv)
    policies = _names(a.policy, list(POLICIES), "policy") or list(POLICIES)
    obligations = _names(a.obligation, list(CHECKED), "obligation") or list(CHECKED)
    if a.no_mutations:
        mutations = []
    elif a.mutation:
        mutations = _names(a.mutation, list(MUTATIONS), "mutation")
    else:
        mutations = [] if a.policy else list(MUTATIONS)
    check_output_dir(a.out, "--out")
    if a.write_manifest:
        check_output_file(a.manifest, "--manifest", ".json")
    try:
        manifest = mf.load(a.manifest)
    except mf.ManifestError as e:
        if not (a.write_manifest and not a.manifest.exists()):
            raise UsageError(str(e))
        manifest = {"verdicts": {}, "mutations": {}, "sometimes": {}}
    st = Settings(K=a.claims, R=a.requests, depth=a.depth, mutation_depth=a.mutation_depth,
                  timeout_s=a.timeout,
                  obligations=obligations, any_slots=not a.no_any)
    some = [] if a.no_sometimes else [p for p in policies if p in CONFORMANT]

    t0 = time.perf_counter()
    pruns, mruns, sruns = run_all(policies, [f"{m}" for m in mutations], some, st, jobs=a.jobs)
    wall = time.perf_counter() - t0

    print(_table(pruns, obligations))
    if mruns:
        print("\nseeded mutations")
        for r in mruns:
            caught = {v.obligation: v.depth for v in r.verdicts if v.verdict == "violated"}
            print(f"  {r.policy:<40} " + (f"caught by {caught}" if caught else "NOT CAUGHT"))
    if sruns:
        print("\nnon-vacuity (sometimes)")
        for s in sruns:
            print(f"  {s.policy:<12} {s.goal:<32} {_reach_line(s, max(st.depth, 10))}")

    results = []
    for r, bound in [(r, st.depth) for r in pruns] + [(r, st.mutation_depth) for r in mruns]:
        for v in r.verdicts + r.any_verdicts:
            item = {"policy": v.policy, "obligation": v.obligation, "verdict": v.verdict,
                    "slots": v.slots, "parametric": v.parametric,
                    "seconds": round(v.seconds, 4), "note": v.note}
            if v.slots != "any":
                item.update(claims=st.K, requests=st.R)
            if v.verdict == "violated":
                item["depth"] = v.depth
                item["counterexample"] = save_counterexample(v.trace, a.out)
            if v.verdict == "unknown":
                item["bound"] = bound
            results.append(item)
    mismatches = mf.compare(manifest, pruns, mruns, sruns) if not a.write_manifest else []
    report = {
        "settings": {"claims": st.K, "requests": st.R, "bmc_depth": st.depth,
                     "mutation_bmc_depth": st.mutation_depth,
                     "timeout_s": st.timeout_s, "jobs": a.jobs},
        "wall_seconds": round(wall, 3),
        "results": results,
        "proofs": [{"policy": r.policy, "proved": r.induction.proved,
                    "dropped": r.induction.dropped, "queries": len(r.induction.queries),
                    "seconds": round(r.induction.seconds, 4)} for r in pruns + mruns],
        "proofs_any": [{"policy": r.policy, "proved": r.cutoff.proved,
                        "dropped": r.cutoff.induction.dropped,
                        "assumptions": {a: ("holds" if not f else f)
                                        for a, f in r.cutoff.assumptions.items()},
                        "queries": len(r.cutoff.induction.queries),
                        "seconds": round(r.cutoff.seconds, 4)}
                       for r in pruns if r.cutoff is not None],
        "mutations": [{"mutation": r.policy,
                       "caught_by": {v.obligation: v.depth for v in r.verdicts
                                     if v.verdict == "violated"}} for r in mruns],
        "sometimes": [{"policy": s.policy, "goal": s.goal, "doc": s.doc, "depth": s.depth,
                       "outcome": s.outcome,
                       "unreachable": None if s.unreachable is None else {
                           "invariants": list(s.unreachable.invariants),
                           "lemma": s.unreachable.lemma, "slots": s.unreachable.slots},
                       "seconds": round(s.seconds, 4)} for s in sruns],
        "mismatches": mismatches,
    }
    write_atomic(a.out / "check-spec.json", json.dumps(report, indent=1))
    if a.write_manifest:
        write_atomic(a.manifest, json.dumps(mf.updated(manifest, pruns, mruns, sruns),
                                             indent=1) + "\n")
        print(f"\nmanifest written: {a.manifest}")
        return EXIT_OK
    print(f"\n{len(results)} verdicts in {wall:.1f}s; report: {a.out / 'check-spec.json'}")
    if mismatches:
        print("MISMATCH with the manifest:", file=sys.stderr)
        for m in mismatches:
            print(f"  {m}", file=sys.stderr)
        return EXIT_UNEXPECTED
    print("all verdicts as in the manifest")
    return EXIT_OK
