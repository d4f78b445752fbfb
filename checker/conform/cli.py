"""`kvclaims conform DESCRIPTOR...`: classify every (runtime, protection mode) of each runtime
descriptor into the six verdict classes of docs/CONTRACT.md section 9, failing closed.

  kvclaims conform                          the shipped descriptors (checker/conform/descriptors)
  kvclaims conform FILE.toml DIR ...        these descriptors (a directory: every *.toml in it)
  kvclaims conform --json FILE --html FILE  also write the rows as JSON and a report page
  kvclaims conform --record TARGET --out F  run our litmus cases on TARGET, write evidence F
  kvclaims conform --recompute ...          re-run each anchored target and require the same
                                            results (a target that cannot run here: unknown)

Exit 0 when every row has the class (and rule) its descriptor expects, 12 when one differs,
2 on bad input (one line on stderr)."""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import List

from kvclaims.errors import EXIT_OK, EXIT_UNEXPECTED, UsageError
from kvclaims.spec.policy import CONFORMANT, POLICIES

from . import descriptor as dsc
from .bundles import MODE_NAMES
from .evidence import record
from .evidence import check_anchor
from .verdict import Row, classify

DESCRIPTOR_DIR = Path(__file__).with_name("descriptors")
SHORT = {"native_conformance": "NATIVE", "adapter_observational": "adapt-obs",
         "adapter_policy": "adapt-pol", "approximation_substrate": "approx",
         "rejected_mapping": "REJECTED", "unknown_evidence": "unknown"}


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def descriptor_files(args: List[str]) -> List[Path]:
    if not args:
        return sorted(DESCRIPTOR_DIR.glob("*.toml"))
    if len(set(args)) != len(args):
        raise UsageError("a descriptor is named twice")
    # a directory stands for the descriptors in it (not below: bad/ is a suite of its own)
    groups = [(a, sorted(Path(a).glob("*.toml")) if Path(a).is_dir() else [Path(a)])
              for a in args]
    empty = [a for a, fs in groups if not fs]
    if empty:
        raise UsageError(f"{empty[0]}: no *.toml descriptor in it")
    return [f for _, fs in groups for f in fs]


def _recompute(d: dsc.Descriptor, rows_anchors) -> None:
    """Re-run each anchored target under the policies its file recorded; a result that
    differs, or a target that cannot run here (vLLM not installed), makes the anchor evidence
    nothing."""
    key = lambda rs: sorted((r.get("litmus"), r.get("variant"), r.get("policy"),
                             r.get("passed")) for r in rs if isinstance(r, dict))
    for a, chk in rows_anchors:
        if not chk.ok:
            continue
        old = json.loads((Path(d.path).parent / a["file"]).read_text())["results"]
        policies = sorted({r.get("policy") for r in old if isinstance(r, dict)}
                          & set(POLICIES)) or CONFORMANT
        with tempfile.TemporaryDirectory() as tmp:
            try:
                fresh = record(chk.target, Path(tmp) / "e.json", policies)
            except ImportError as e:
                chk.ok, chk.rule = False, "evidence-not-recomputable"
                chk.detail = f"{chk.file}: target {chk.target} cannot run here ({e})"
                continue
        if key(fresh["results"]) != key(old):
            chk.ok, chk.rule = False, "evidence-not-reproduced"
            chk.detail = f"{chk.file}: a fresh run of {chk.target} gives other results"


def run(paths: List[Path], recompute: bool = False) -> List[Row]:
    rows = []
    for p in paths:
        d = dsc.load(p)
        base = Path(d.path).parent
        checks = [check_anchor(a, base, d.version, d.targets) for a in d.anchors]
        if recompute:
            _recompute(d, list(zip(d.anchors, checks)))
        rows += [classify(d, m, checks) for m in MODE_NAMES]
    return rows


def table(rows: List[Row]) -> str:
    runtimes = []
    for r in rows:
        if (r.runtime, r.version) not in runtimes:
            runtimes.append((r.runtime, r.version))
    w0 = max(len(f"{a} {b}") for a, b in runtimes) + 2
    head = f"{'runtime version':<{w0}}" + "".join(f"{m:<16}" for m in MODE_NAMES)
    lines = [head, "-" * len(head)]
    for rt in runtimes:
        cells = {r.mode: r for r in rows if (r.runtime, r.version) == rt}
        lines.append(f"{rt[0] + ' ' + rt[1]:<{w0}}" + "".join(
            f"{SHORT[cells[m].cls] + ('!' if cells[m].mismatch else ''):<16}"
            for m in MODE_NAMES))
    return "\n".join(lines)


def main(argv) -> int:
    p = _Parser(prog="kvclaims conform", description=__doc__.splitlines()[0])
    p.add_argument("descriptors", nargs="*")
    p.add_argument("--json", metavar="FILE", help="write the rows as JSON")
    p.add_argument("--html", metavar="FILE", help="write the report page")
    p.add_argument("--record", metavar="TARGET", help="record evidence for one of our targets")
    p.add_argument("--out", metavar="FILE", help="evidence file written by --record")
    p.add_argument("--policy", action="append", default=[],
                   help="with --record: run these policies (default: the conformant ones)")
    p.add_argument("--recompute", action="store_true",
                   help="re-run every anchored target and require the same results")
    p.add_argument("--verbose", "-v", action="store_true", help="print every row's rules")
    a = p.parse_args(argv)
    if a.record:
        from kvclaims.checker.litmus import TARGETS
        if a.record not in TARGETS:
            raise UsageError(f"unknown target '{a.record}' (choose from {', '.join(TARGETS)})")
        if not a.out or a.descriptors:
            raise UsageError("--record TARGET needs --out FILE and no descriptors")
        from kvclaims.checker.configio import resolve_policy
        for n in a.policy:
            resolve_policy(n)
        try:
            doc = record(a.record, Path(a.out), a.policy or CONFORMANT)
        except OSError as e:
            raise UsageError(f"cannot write {e.filename}: {e.strerror}") from None
        n = sum(r["passed"] for r in doc["results"])
        print(f"{a.out}: {n}/{len(doc['results'])} cases pass on {a.record} "
              f"({doc['runtime']} {doc['runtime_version']})")
        return EXIT_OK if n == len(doc["results"]) else EXIT_UNEXPECTED
    if a.out or a.policy:
        raise UsageError("--out and --policy go with --record")
    for f in (a.json, a.html):        # fail before any work, and write nothing on bad input
        if f and Path(f).is_dir():
            raise UsageError(f"{f}: is a directory")
    rows = run(descriptor_files(a.descriptors), a.recompute)
    print(table(rows))
    bad = [r for r in rows if r.mismatch]
    for r in rows:
        if a.verbose or r.mismatch:
            print(f"  {r.runtime} {r.mode}: {r.cls} [{'; '.join(r.rules)}]"
                  + (f"  MISMATCH {r.mismatch}" if r.mismatch else ""))
    try:
        if a.json:
            Path(a.json).parent.mkdir(parents=True, exist_ok=True)
            Path(a.json).write_text(json.dumps([r.to_json() for r in rows], indent=1) + "\n")
        if a.html:
            from .report import write_html
            write_html(rows, Path(a.html))
    except OSError as e:
        raise UsageError(f"cannot write {e.filename}: {e.strerror}") from None
    print(f"{len(rows)} rows, {len(bad)} differ from their descriptors' expectations")
    if bad:
        print("MISMATCH with the descriptors' expectations", file=sys.stderr)
        return EXIT_UNEXPECTED
    return EXIT_OK
