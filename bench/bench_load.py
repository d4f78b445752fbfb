"""make bench-load: `kvclaims load` for a fixed time per (engine, policy), one run each, each in
its own process (the multi-process engine runs its core in a child), written to
bench/load.json. The numbers are copied into BENCHMARKS.md's load section.

    python bench/bench_load.py [--seconds 300] [--engines in-process,multi-process]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

OUT = Path(__file__).with_name("load.json")
KEYS = ("submitted", "terminal", "unfinished", "refusals", "refusals_naming_no_claim",
        "claims_accepted", "claims_rejected", "bad_claims", "observer_findings", "stalls",
        "longest_no_progress_steps", "steps", "seconds", "peak_rss_mb", "rss_after_warmup_mb",
        "rss_end_mb")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=300.0)
    p.add_argument("--engines", default="in-process,multi-process")
    p.add_argument("--policies", default="hard_refuse,hard_demote")
    args = p.parse_args(argv)
    runs = []
    for engine in args.engines.split(","):
        for policy in args.policies.split(","):
            with tempfile.TemporaryDirectory() as d:
                out = os.path.join(d, "load.json")
                cmd = [sys.executable, "-m", "kvclaims.cli", "load", "--engine", engine,
                       "--policy", policy, "--seconds", str(args.seconds), "--json", out]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                rep = json.loads(Path(out).read_text())
                rep["exit_code"] = proc.returncode
                rep["command"] = "kvclaims " + " ".join(cmd[3:-2])
                runs.append(rep)
                print(f"{engine} {policy}: exit {proc.returncode}: "
                      + ", ".join(f"{k} {rep[k]}" for k in KEYS), flush=True)
    OUT.write_text(json.dumps({"machine": {"cpus": os.cpu_count(),
                                           "python": platform.python_version()},
                               "runs": runs}, indent=1) + "\n")
    return 0 if all(r["exit_code"] == 0 for r in runs) else 12


if __name__ == "__main__":
    sys.exit(main())
