"""`kvclaims validate` throughput (issue 11: a 100,000-event trace in under 10 s).

The trace is the MicroRuntime's own telemetry under hard_refuse: a 600-block hard claim in a
1,000-block pool, then requests of 300 live blocks that are admitted (evicting, block by block,
the ordinary cache their predecessors left) and finished, until the trace has the wanted number
of events; the same run is also written in the artifact's schema 1.  Each file is validated
against all eight policies, including reading the file; best wall and best CPU time of 3.
Results:
bench/validate.json."""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from kvclaims.checker.export_artifact_v1 import write_artifact_v1
from kvclaims.checker.validate import validate
from kvclaims.model.telemetry import dump_jsonl
from kvclaims.refinement.model_target import ModelTarget
from kvclaims.spec.actions import Step
from kvclaims.spec.policy import POLICIES
from kvclaims.spec.state import ClaimConfig, Config, RequestConfig

OUT = Path(__file__).with_name("validate.json")


def workload(target_events: int, usable=1000, claim=600, need=300):
    per_request = need + 2               # victims (after the first), admitted, finished
    n_req = max(2, target_events // per_request + 1)
    cfg = Config(usable, claim, (ClaimConfig(claim, 0, claim, 0, 0, 0, 0),),
                 tuple(RequestConfig(need) for _ in range(n_req)))
    t = ModelTarget(run_id="bench")
    t.reset(cfg, POLICIES["hard_refuse"])
    for a in ("submit", "accept", "materialize"):
        t.apply(Step(a, (0,)))
    for j in range(n_req):
        t.apply(Step("admit", (j,), (("admit", True),)))
        t.apply(Step("finish", (j,)))
        if len(t.rt.telemetry.events) >= target_events:
            break
    return t.rt.telemetry.events


def timed(path: str, repeat: int):
    """Best wall and best process-CPU seconds of `repeat` runs (the machine is shared: CPU
    time is what the validator itself costs, wall time what a user waits)."""
    wall, cpu, rep = [], [], None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        rep = validate(path)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return min(wall), min(cpu), rep


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args(argv)
    events = workload(a.events)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        own = Path(d) / "bench.jsonl"
        dump_jsonl(events, str(own))
        art = Path(d) / "bench.art.jsonl"
        write_artifact_v1(events, str(art))
        for name, path in (("kvclaims", own), ("artifact-v1", art)):
            secs, cpu, rep = timed(str(path), a.repeat)
            row = {"format": name, "events": rep.events, "seconds": round(secs, 2),
                   "cpu_seconds": round(cpu, 2), "events_per_second": int(rep.events / secs),
                   "consistent_with": rep.consistent_with,
                   "violated": [v.obligation for v in rep.obligations
                                if v.verdict == "violated"]}
            rows.append(row)
            print(f"{name:12} {rep.events:>8} events  {secs:6.2f} s wall  {cpu:6.2f} s CPU  "
                  f"{row['events_per_second']:>8} events/s  consistent with "
                  f"{', '.join(rep.consistent_with)}")
    OUT.write_text(json.dumps({"policies": len(POLICIES), "runs": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
