"""Validate the paper's published artifact traces from a local copy the user points at:

    python -m kvclaims.checker.artifact_runs /path/to/kv-residency-vllm-arbiter [--json FILE]
    make validate-artifact ARTIFACT=/path/to/kv-residency-vllm-arbiter

The project ships no copy of those files.  The runs are the ones issue 11 names (conformance
L1-L5, hard claim 60/70/80, native block pool, no-admit, the capacity sweep); each is validated
against every policy, and the verdicts are compared with the ones recorded in
bench/artifact_verdicts.json (which policies it is consistent with, which obligations are
violated / not evidenced).  Exit 0 when every file is present and matches, 12 when a verdict
differs or a file is missing, 2 when the directory does not exist."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List

from kvclaims.errors import EXIT_OK, EXIT_UNEXPECTED, EXIT_USAGE, UsageError

RECORDED = Path(__file__).resolve().parents[1] / "bench" / "artifact_verdicts.json"
SWEEP = [f"artifacts/capacity_sweep/{p}_{n}.jsonl"
         for p in ("native", "write_no_admit", "hard_resident_exclude")
         for n in (80, 90, 100, 110, 120, 130, 150)]
RUNS = ["artifacts/conformance/L1_native_no_claim.jsonl",
        "artifacts/conformance/L2_write_no_admit.jsonl",
        "artifacts/conformance/L3_hard_claim_infeasibility.jsonl",
        "artifacts/conformance/L4_demote_before_loss.jsonl",
        "artifacts/conformance/L5_expiry_before_loss.jsonl",
        "artifacts/hard_claim/hard_claim_60_70_80.jsonl",
        "artifacts/native_blockpool/native_blockpool_60_70_80.jsonl",
        "artifacts/no_admit/no_admit_60_70_80.jsonl"] + SWEEP


def verdict_row(rep) -> Dict[str, Any]:
    by = {}
    for v in rep.obligations:
        by.setdefault(v.verdict, []).append(v.obligation)
    return {"consistent_with": rep.consistent_with, "violated": by.get("violated", []),
            "not_evidenced": by.get("not_evidenced", [])}


def run(root: Path) -> List[Dict[str, Any]]:
    from .validate import validate
    rows = []
    for rel in RUNS:
        path = root / rel
        if not path.exists():
            rows.append({"trace": rel, "missing": True})
            continue
        try:
            rep = validate(str(path))
        except UsageError as e:
            rows.append({"trace": rel, "bad_input": str(e)})
            continue
        rows.append({"trace": rel, "events": rep.events, **verdict_row(rep)})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="artifact_runs", description=__doc__.splitlines()[0])
    ap.add_argument("root", help="local checkout of gustavgauge/kv-residency-vllm-arbiter")
    ap.add_argument("--json", help="write the verdicts here")
    a = ap.parse_args(argv)
    root = Path(a.root)
    if not root.is_dir():
        print(f"artifact_runs: no such directory: {root}", file=sys.stderr)
        return EXIT_USAGE
    rows = run(root)
    recorded = {r["trace"]: r for r in json.loads(RECORDED.read_text())["runs"]}
    differ = 0
    for r in rows:
        want = recorded.get(r["trace"], {})
        same = all(r.get(k) == want.get(k)
                   for k in ("consistent_with", "violated", "not_evidenced"))
        differ += not same
        pols = r.get("consistent_with")
        print(f"{'ok  ' if same else 'DIFF'} {r['trace']:62} "
              + ("missing" if r.get("missing") else r.get("bad_input") or
                 f"{r['events']:>5} events; consistent with "
                 f"{'every policy' if pols and len(pols) == 8 else ', '.join(pols) or 'none'}; "
                 f"violated {r['violated'] or '-'}; not evidenced {r['not_evidenced']}"))
    if a.json:
        Path(a.json).write_text(json.dumps({"runs": rows}, indent=1) + "\n")
    return EXIT_UNEXPECTED if differ else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
