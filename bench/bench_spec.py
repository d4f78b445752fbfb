"""make bench-spec: time the parametric proofs of the conformant policies (whole run and each
query), the BMC of every bad policy and the full `kvclaims check`, and how the proof time grows
with the number of claim/request slots.  Medians over repeated runs, all in one process run.
Writes bench/spec.json and the spec section of BENCHMARKS.md."""
from __future__ import annotations

import json
import platform
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import z3

from kvclaims.checker.bmc import bmc
from kvclaims.checker.induction import CANDIDATES, prove
from kvclaims.spec.policy import BAD, CONFORMANT, POLICIES

ROOT = Path(__file__).resolve().parent.parent
REPEAT = int(sys.argv[1]) if len(sys.argv) > 1 else 5
SIGNATURE = {"native": "O3", "soft_priority": "O7", "write_no_admit": "O2",
             "block_count": "O5", "late_release": "O4", "misattribute": "O8"}


def med(xs):
    return round(statistics.median(xs), 4)


def main():
    out = {"machine": {"cpus": 2, "python": platform.python_version(),
                       "z3": z3.get_version_string()}, "repeat": REPEAT}
    # 1. conformant proofs, whole and per query
    totals, per_policy, solver_share = [], defaultdict(list), []
    per_query = defaultdict(list)
    for _ in range(REPEAT):
        t = 0.0
        for p in CONFORMANT:
            r = prove(POLICIES[p])
            assert len(r.proved) == len(CANDIDATES), r.dropped
            per_policy[p].append(r.seconds)
            t += r.seconds
            for q in r.queries:
                per_query[(p, q.candidate, q.action)].append(q.seconds)
            solver_share.append(sum(q.seconds for q in r.queries) / r.seconds)
        totals.append(t)
    qmed = {k: med(v) for k, v in per_query.items()}
    slowest = sorted(qmed.items(), key=lambda kv: -kv[1])[:10]
    by_action = defaultdict(float)
    for (p, c, a), s in qmed.items():
        by_action[a.split("[")[0]] += s
    out["conformant_proofs"] = {
        "total_seconds_median": med(totals), "target_seconds": 10.0,
        "per_policy_seconds_median": {p: med(v) for p, v in per_policy.items()},
        "solver_share_median": med(solver_share),
        "queries_per_policy": len([k for k in qmed if k[0] == CONFORMANT[0]]),
        "query_seconds_median_of_medians": med(list(qmed.values())),
        "slowest_queries": [{"policy": p, "candidate": c, "action": a, "seconds": s}
                            for (p, c, a), s in slowest],
        "seconds_by_action_kind": {a: round(s, 4) for a, s in
                                   sorted(by_action.items(), key=lambda kv: -kv[1])},
    }
    # 2. shortest counterexample of each bad policy
    out["bmc"] = {}
    for p in BAD:
        xs, depth = [], None
        for _ in range(REPEAT):
            t0 = time.perf_counter()
            r = bmc(POLICIES[p], [SIGNATURE[p]])
            xs.append(time.perf_counter() - t0)
            depth = r.found[SIGNATURE[p]].depth
        out["bmc"][p] = {"obligation": SIGNATURE[p], "depth": depth, "seconds_median": med(xs)}
    # 3. scaling in slots (one run each: it only shows the trend)
    out["slots_scaling"] = []
    for k in (1, 2, 3, 4, 5):
        t0 = time.perf_counter()
        ok = all(len(prove(POLICIES[p], K=k, R=k).proved) == 16 for p in CONFORMANT)
        out["slots_scaling"].append({"claims": k, "requests": k, "all_proved": ok,
                                     "seconds": round(time.perf_counter() - t0, 3)})
    # 4. the whole main job, as users run it
    xs = []
    for _ in range(max(1, REPEAT // 2)):
        t0 = time.perf_counter()
        rc = subprocess.run([str(Path(sys.executable).with_name("kvclaims")), "check",
                             "--out", str(ROOT / "out" / "bench-check")],
                            capture_output=True, cwd=ROOT).returncode
        assert rc == 0, "kvclaims check does not match the manifest"
        xs.append(time.perf_counter() - t0)
    out["check_spec_wall_seconds_median"] = med(xs)
    (ROOT / "bench" / "spec.json").write_text(json.dumps(out, indent=1) + "\n")
    write_markdown(out)
    print(json.dumps(out["conformant_proofs"], indent=1))


def write_markdown(o):
    c = o["conformant_proofs"]
    lines = [
        "## Spec proofs (`make bench-spec`)", "",
        f"Medians of {o['repeat']} runs in one process, 2 cores, z3 {o['machine']['z3']}. "
        "Numbers from bench/spec.json.", "",
        "| what | median |", "|---|---|",
        f"| O1-O10 of hard_refuse and hard_demote proved parametric (3 claims, 3 requests), "
        f"all queries | **{c['total_seconds_median']} s** (target < 10 s) |",
    ]
    for p, s in c["per_policy_seconds_median"].items():
        lines.append(f"| {p}: {c['queries_per_policy']} queries (init + action x candidate) "
                     f"| {s} s |")
    lines.append(f"| one consecution query (median of medians) | "
                 f"{c['query_seconds_median_of_medians'] * 1000:.1f} ms |")
    lines.append(f"| whole `kvclaims check` (8 policies, 6 mutations, 40 non-vacuity goals, "
                 f"2 workers) | {o['check_spec_wall_seconds_median']} s |")
    lines += ["", f"Where the time goes: z3 answers the queries in {c['solver_share_median']:.0%} "
              "of each proof run; the rest is building the terms (the spec's Python code run "
              "symbolically) and asserting them.  No query is slow: the slowest are:", ""]
    lines += ["Slowest queries: " + ", ".join(
        f"{q['policy']} {q['candidate']}/{q['action']} {q['seconds'] * 1000:.0f} ms"
        for q in c["slowest_queries"][:5]) + ".", "",
        "Time by action kind (sum of per-query medians, both policies): " + ", ".join(
            f"{a} {s:.2f} s" for a, s in list(c["seconds_by_action_kind"].items())[:6]) + ".", "",
        "| bad policy | obligation | shortest counterexample | BMC median |", "|---|---|---|---|"]
    for p, b in o["bmc"].items():
        lines.append(f"| {p} | {b['obligation']} | {b['depth']} steps | {b['seconds_median']} s |")
    lines += ["", "| claim and request slots | both conformant policies proved | seconds |",
              "|---|---|---|"]
    for s in o["slots_scaling"]:
        lines.append(f"| {s['claims']} + {s['requests']} | {s['all_proved']} | {s['seconds']} |")
    section = "\n".join(lines) + "\n"
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    start = text.find("## Spec proofs")
    if start >= 0:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + (text[end + 1:] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


if __name__ == "__main__":
    main()
