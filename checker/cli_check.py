"""`kvclaims check`: prove or refute every (policy, obligation), catch the seeded mutations,
witness the non-vacuity goals, compare with the manifest.

Prints a policy x obligation table, writes out/check-spec.json (and one trace per
counterexample under out/<policy>/<obligation>/), exits 0 when everything matches the
manifest, 12 when a verdict differs, 2 on bad usage."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import List

from kvclaims.errors import EXIT_OK, EXIT_UNEXPECTED, UsageError
from kvclaims.spec.obligations import CHECKED
from kvclaims.spec.policy import CONFORMANT, MUTATIONS, POLICIES

from . import manifest as mf
from .run import Settings, run_all
from .traces import save_counterexample


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _names(values: List[str], known, what: str) -> List[str]:
    out = []
    for v in values:
        for n in v.split(","):
            n = n.strip()
            if n not in known:
                raise UsageError(f"unknown {what} '{n}' (choose from {', '.join(known)})")
            if n not in out:
                out.append(n)
    return out


def _positive(kind, minimum):
    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a number")
        if v < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text}")
        return v
    return parse


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="kvclaims check", description=__doc__)
    p.add_argument("--policy", action="append", default=[],
                   help="policy to check (repeatable or comma-separated; default: all)")
    p.add_argument("--obligation", action="append", default=[],
                   help="obligation id O1..O16 or S1..S6 (repeatable or comma-separated; "
                        "default: all)")
    p.add_argument("--mutation", action="append", default=[],
                   help="seeded mutation to check (default: all, unless --policy is given)")
    p.add_argument("--no-mutations", action="store_true")
    p.add_argument("--no-sometimes", action="store_true", help="skip the non-vacuity goals")
    p.add_argument("--depth", type=_positive(int, 0), default=8, help="BMC bound (steps)")
    p.add_argument("--timeout", type=_positive(float, 0.001), default=60.0,
                   help="seconds per solver query")
    p.add_argument("--claims", type=_positive(int, 1), default=3, help="claim slots")
    p.add_argument("--requests", type=_positive(int, 1), default=3, help="request slots")
    p.add_argument("--jobs", type=_positive(int, 1), default=2, help="worker processes")
    p.add_argument("--manifest", type=Path, default=mf.DEFAULT_PATH)
    p.add_argument("--out", type=Path, default=Path("out"))
    p.add_argument("--write-manifest", action="store_true",
                   help="record this run's results as the expected ones (review the diff!)")
    return p


def _atomic_write(path: Path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _cell(v) -> str:
    if v.verdict == "proved":
        return f"proved {v.seconds:5.2f}s"
    if v.verdict == "violated":
        return f"viol@{v.depth} {v.seconds:5.2f}s"
    return "unknown"


def _table(runs, obligations) -> str:
    w = 14
    head = f"{'policy':<34}" + "".join(f"{o:<{w}}" for o in obligations) + "total"
    lines = [head, "-" * len(head)]
    for r in runs:
        lines.append(f"{r.policy:<34}" + "".join(f"{_cell(v):<{w}}" for v in r.verdicts)
                     + f"{r.seconds:.1f}s")
    return "\n".join(lines)


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
    try:
        manifest = mf.load(a.manifest)
    except mf.ManifestError as e:
        if not (a.write_manifest and not a.manifest.exists()):
            raise UsageError(str(e))
        manifest = {"verdicts": {}, "mutations": {}, "sometimes": {}}
    st = Settings(K=a.claims, R=a.requests, depth=a.depth, timeout_s=a.timeout,
                  obligations=obligations)
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
            print(f"  {s.policy:<12} {s.goal:<32} "
                  + (f"reached at depth {s.depth}" if s.depth is not None
                     else f"unreachable within {max(st.depth, 10)} steps"))

    results = []
    for r in pruns + mruns:
        for v in r.verdicts:
            item = {"policy": v.policy, "obligation": v.obligation, "verdict": v.verdict,
                    "parametric": v.parametric, "seconds": round(v.seconds, 4), "note": v.note,
                    "claims": st.K, "requests": st.R}
            if v.verdict == "violated":
                item["depth"] = v.depth
                item["counterexample"] = save_counterexample(v.trace, a.out)
            if v.verdict == "unknown":
                item["bound"] = st.depth
            results.append(item)
    mismatches = mf.compare(manifest, pruns, mruns, sruns) if not a.write_manifest else []
    report = {
        "settings": {"claims": st.K, "requests": st.R, "bmc_depth": st.depth,
                     "timeout_s": st.timeout_s, "jobs": a.jobs},
        "wall_seconds": round(wall, 3),
        "results": results,
        "proofs": [{"policy": r.policy, "proved": r.induction.proved,
                    "dropped": r.induction.dropped, "queries": len(r.induction.queries),
                    "seconds": round(r.induction.seconds, 4)} for r in pruns + mruns],
        "mutations": [{"mutation": r.policy,
                       "caught_by": {v.obligation: v.depth for v in r.verdicts
                                     if v.verdict == "violated"}} for r in mruns],
        "sometimes": [{"policy": s.policy, "goal": s.goal, "doc": s.doc, "depth": s.depth,
                       "seconds": round(s.seconds, 4)} for s in sruns],
        "mismatches": mismatches,
    }
    _atomic_write(a.out / "check-spec.json", json.dumps(report, indent=1))
    if a.write_manifest:
        _atomic_write(a.manifest, json.dumps(mf.updated(manifest, pruns, mruns, sruns),
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
