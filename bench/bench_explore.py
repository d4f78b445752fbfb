"""make bench-explore: the explicit-state explorer against SPIN on one reference configuration
of more than a million distinct states (without symmetry).

Measures, in one run: distinct states per second on one core, and the time to an exhaustive
verdict without and with symmetry reduction; then SPIN on a Promela model of the same
configuration (same variables, actions, invariant, bounds; generated from the spec's staged
terms by checker/promela.py), installing `spin` with apt-get if it is missing.  Writes
bench/explore.json and the explorer section of BENCHMARKS.md."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kvclaims.checker.configio import config_to_dict
from kvclaims.checker.explore import explore
from kvclaims.checker.promela import promela
from kvclaims.spec.policy import POLICIES
from kvclaims.spec.state import ClaimConfig, Config, RequestConfig

ROOT = Path(__file__).resolve().parent.parent
POLICY = "native"
MAX_CLOCK = 1
CFG = Config(usable=5, cap=4, claims=(ClaimConfig(2, 0, 2, 0, 0, 0),) * 2,
             requests=(RequestConfig(3),) * 2)


def ensure_spin() -> str:
    if shutil.which("spin") is None:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "spin", "gcc"], check=True)
    return subprocess.run(["spin", "-V"], capture_output=True, text=True).stdout.strip()


def run_spin(work: Path) -> dict:
    pml = work / "model.pml"
    t0 = time.perf_counter()
    pml.write_text(promela(CFG, POLICIES[POLICY], MAX_CLOCK))
    gen = time.perf_counter() - t0
    t0 = time.perf_counter()
    subprocess.run(["spin", "-a", "model.pml"], cwd=work, check=True, capture_output=True)
    subprocess.run(["gcc", "-O2", "-DSAFETY", "-DNOCLAIM", "-DMEMLIM=16000", "-o", "pan",
                    "pan.c"], cwd=work, check=True, capture_output=True)
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    r = subprocess.run(["./pan", "-c0", "-m10000000", "-w26"], cwd=work, capture_output=True,
                       text=True)
    run = time.perf_counter() - t0
    out = r.stdout
    num = lambda pat: int(re.search(pat, out).group(1))
    return {"version": ensure_spin(), "generate_s": round(gen, 3), "build_s": round(build, 3),
            "verify_s": round(run, 3), "time_to_verdict_s": round(build + run, 3),
            "states_stored": num(r"(\d+) states, stored"),
            "transitions": num(r"(\d+) transitions"),
            "errors": num(r"errors: (\d+)"),
            "state_vector_bytes": num(r"State-vector (\d+) byte"),
            "pan_reported_s": float(re.search(r"pan: elapsed time ([\d.e+-]+)", out).group(1))
            if "elapsed time" in out else None,
            "model_bytes": pml.stat().st_size}


def run_ours(symmetry: bool) -> dict:
    t0 = time.perf_counter()
    r = explore(CFG, POLICIES[POLICY], max_clock=MAX_CLOCK, symmetry=symmetry)
    total = time.perf_counter() - t0
    return {"distinct_states": r.distinct, "depth": r.depth, "transitions": r.transitions,
            "explore_s": round(r.seconds, 3), "time_to_verdict_s": round(total, 3),
            "states_per_second": round(r.states_per_second, 1),
            "violated": {ob: t.depth for ob, t in sorted(r.traces.items())},
            "per_action": r.per_action}


def main() -> int:
    if sys.argv[1:] == ["--rewrite"]:      # re-render the section from bench/explore.json
        res = json.loads((ROOT / "bench" / "explore.json").read_text())
        add_search_ratios(res)
        (ROOT / "bench" / "explore.json").write_text(json.dumps(res, indent=1) + "\n")
        write_section(res)
        return 0
    ensure_spin()
    with tempfile.TemporaryDirectory() as d:
        spin = run_spin(Path(d))
    ours_sym = run_ours(True)
    ours_nosym = run_ours(False)
    res = {
        "config": config_to_dict(CFG), "policy": POLICY, "max_clock": MAX_CLOCK,
        "cores": 1, "cpu_count": os.cpu_count(), "python": sys.version.split()[0],
        "explorer_no_symmetry": ours_nosym, "explorer_symmetry": ours_sym, "spin": spin,
        "same_state_count": spin["states_stored"] == ours_nosym["distinct_states"] + 1,
        "ratio_symmetry_vs_spin": round(ours_sym["time_to_verdict_s"]
                                        / spin["time_to_verdict_s"], 2),
        "ratio_no_symmetry_vs_spin": round(ours_nosym["time_to_verdict_s"]
                                           / spin["time_to_verdict_s"], 2),
    }
    add_search_ratios(res)
    (ROOT / "bench" / "explore.json").write_text(json.dumps(res, indent=1) + "\n")
    write_section(res)
    print(json.dumps({k: v for k, v in res.items() if k != "config"}, indent=1))
    return 0


def add_search_ratios(res: dict) -> None:
    """SPIN's time to verdict includes generating and compiling pan.c; against its search
    alone the comparison is harsher, and both are recorded."""
    sv = res["spin"]["verify_s"]
    res["ratio_symmetry_vs_spin_search_only"] = round(
        res["explorer_symmetry"]["time_to_verdict_s"] / sv, 2)
    res["ratio_no_symmetry_vs_spin_search_only"] = round(
        res["explorer_no_symmetry"]["time_to_verdict_s"] / sv, 2)


BEGIN, END = "<!-- bench-explore:begin -->", "<!-- bench-explore:end -->"


def write_section(r: dict) -> None:
    a, b, s = r["explorer_no_symmetry"], r["explorer_symmetry"], r["spin"]
    if r["ratio_symmetry_vs_spin_search_only"] <= 1:
        reading = ("met with symmetry even against SPIN's search alone: the explorer reaches "
                   "the verdict by exploring fewer states, checking every obligation in each.")
    else:
        reading = ("met only when SPIN's compile step is counted; against SPIN's compiled "
                   f"search the explorer is {r['ratio_symmetry_vs_spin_search_only']}x slower "
                   "with symmetry.")
    text = f"""{BEGIN}
## Explicit-state exploration vs SPIN (`make bench-explore`)

Reference configuration: usable 5, cap 4, two interchangeable hard claims (footprint 2,
leading_prefix_at_least(2)), two interchangeable requests of 3 blocks, clock bound
{r['max_clock']}, policy `{r['policy']}` (every obligation checked in every state; the run
continues past violations so the verdict is exhaustive). One core, Python {r['python']},
{s['version'].splitlines()[0] if s['version'] else 'SPIN'}. Numbers from bench/explore.json.

| checker | distinct states | depth | time to verdict | states/s |
|---|---|---|---|---|
| kvclaims explore, no symmetry | {a['distinct_states']} | {a['depth']} | {a['time_to_verdict_s']} s | {a['states_per_second']:.0f} |
| kvclaims explore, symmetry | {b['distinct_states']} | {b['depth']} | {b['time_to_verdict_s']} s | {b['states_per_second']:.0f} |
| SPIN (pan -c0, hash compaction off) | {s['states_stored']} stored | | {s['time_to_verdict_s']} s (build {s['build_s']} s + search {s['verify_s']} s) | {s['states_stored'] / max(s['verify_s'], 1e-9):.0f} |

SPIN stores one state more than the explorer without symmetry (the process's state before
its initialising d_step): same transition system ({'confirmed' if r['same_state_count'] else 'NOT confirmed'}).

**Ratio (our time to verdict / SPIN's, SPIN counted from `spin -a` + `gcc` + search):
{r['ratio_symmetry_vs_spin']} with symmetry, {r['ratio_no_symmetry_vs_spin']} without.**
Against SPIN's search alone (pan already compiled): {r['ratio_symmetry_vs_spin_search_only']}
with symmetry, {r['ratio_no_symmetry_vs_spin_search_only']} without. Target was <= 1: {reading}
Most of SPIN's time is gcc on the generated pan.c (the model has one guarded d_step per action
instance and choice vector, {s['model_bytes']} bytes of Promela); a hand-tuned Promela model
would compile much faster, so the search-only ratio is the one to read.

Where the time goes: the explorer runs the spec's own guards and effects, staged into
straight-line Python per action instance (checker/compile.py), so each state costs a few
dozen guard calls, the admit choice enumeration and the canonicalisation; symmetry reduction
explores {a['distinct_states'] / b['distinct_states']:.1f}x fewer states but its canonical
form (the least image of the state under the permutations of interchangeable claims and
requests, precomputed as index maps) costs about
{(a['states_per_second'] / max(b['states_per_second'], 1e-9)):.1f}x more per state. SPIN runs
compiled C over a {s['state_vector_bytes']}-byte state vector.
{END}
"""
    p = ROOT / "BENCHMARKS.md"
    cur = p.read_text() if p.exists() else "# Benchmarks\n"
    if BEGIN in cur:
        cur = cur[:cur.index(BEGIN)] + text.strip() + cur[cur.index(END) + len(END):]
    else:
        cur = cur.rstrip() + "\n\n" + text
    p.write_text(cur)


if __name__ == "__main__":
    sys.exit(main())
