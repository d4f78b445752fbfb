"""`kvclaims observe FILE.jsonl [--json]`: reconstruct a run from its telemetry alone (O6).

Exit 0: the trace is whole (ends with run_closed) and shows no breach; 12: findings (printed)
or an incomplete trace (no run_closed: cut at the tail); 2: the file is not a telemetry trace
(the message names the line)."""
from __future__ import annotations

import json

from kvclaims.errors import EXIT_OK, EXIT_UNEXPECTED, UsageError
from kvclaims.options import Parser

from .observer import TelemetryError, observe_file


def observe(argv) -> int:
    ap = Parser(prog="kvclaims observe", description=__doc__.splitlines()[0])
    ap.add_argument("trace", help="telemetry JSON Lines file")
    ap.add_argument("--json", action="store_true", help="print the reconstruction as JSON")
    a = ap.parse_args(argv)
    try:
        rec = observe_file(a.trace)
    except TelemetryError as e:
        raise UsageError(str(e)) from None
    if a.json:
        print(json.dumps(rec.to_json(), indent=1))
    else:
        print(f"run {rec.run_id}: {rec.events} events")
        for cid, c in rec.claims.items():
            print(f"  claim {cid} ({c.object_id}): {' > '.join(t for _, t in c.history)}"
                  f" => {c.status}")
        for x in rec.conflicts:
            print(f"  conflict @{x.seq} request {x.request_id}: {x.arbiter_action}, "
                  f"blocking {list(x.blocking_claim_ids)}, shortfall "
                  f"{x.capacity_shortfall_blocks}, {x.feasibility}")
        for rid, r in rec.requests.items():
            print(f"  request {rid} => {r.status}")
        for f in rec.findings:
            print(f"  FINDING {f.kind} @{f.seq}: {f.message}")
        print(f"verdict: {rec.verdict}" + ("" if rec.closed else
                                           " (no run_closed event: the trace may be cut)"))
    return EXIT_OK if rec.verdict == "whole" else EXIT_UNEXPECTED
