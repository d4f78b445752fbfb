"""`make mutate`: the mutation score of the checker.  Every seeded mutation of the conformant
policies (spec/policy.py MUTATIONS, with MUTATION_TARGETS saying what each breaks) is checked
like a policy (Houdini induction, then BMC for what was not proved); the report says which
checks kill it (obligation and shortest counterexample length), whether the check written for
it is among them, the kill rate, and every survivor.  Writes out/mutate.json.

Exit 0 when every mutation is killed and the killers are the manifest's, 12 otherwise."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kvclaims.spec.policy import MUTATION_TARGETS, MUTATIONS

from . import manifest as mf
from .run import Settings, run_all


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m kvclaims.checker.mutate", description=__doc__)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--depth", type=int, default=8)
    p.add_argument("--out", type=Path, default=Path("out"))
    p.add_argument("--manifest", type=Path, default=mf.DEFAULT_PATH)
    a = p.parse_args(argv)
    # the score searches every mutation to --depth, not to check's shorter mutation bound
    st = Settings(depth=a.depth, mutation_depth=a.depth)
    _, runs, _ = run_all([], list(MUTATIONS), [], st, jobs=a.jobs)
    manifest = mf.load(a.manifest)
    rows, killed = [], 0
    print(f"{'mutation':<24}{'target':<8}{'killed by (obligation: counterexample steps)'}")
    for r in runs:
        name = r.policy.split("/", 1)[1]
        target, what = MUTATION_TARGETS[name]
        caught = {v.obligation: v.depth for v in r.verdicts if v.verdict == "violated"}
        killed += bool(caught)
        mark = "" if target in caught else "  (target check missed it)"
        print(f"{name:<24}{target:<8}"
              + (", ".join(f"{o}: {d}" for o, d in caught.items()) if caught else "SURVIVED")
              + mark)
        rows.append({"mutation": name, "mutant_of": r.policy.split("/", 1)[0], "breaks": what,
                     "target": target, "killed_by": caught, "target_caught": target in caught})
    rate = killed / len(runs) if runs else 1.0
    print(f"\nkill rate: {killed}/{len(runs)} = {rate:.0%}")
    survivors = [x["mutation"] for x in rows if not x["killed_by"]]
    if survivors:
        print("survivors: " + ", ".join(survivors))
    mism = mf.compare(manifest, [], runs, [])
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "mutate.json").write_text(json.dumps(
        {"kill_rate": rate, "killed": killed, "mutations": rows, "survivors": survivors,
         "mismatches": mism}, indent=1) + "\n")
    for m in mism:
        print(f"  MISMATCH {m}", file=sys.stderr)
    return 0 if not survivors and not mism else 12


if __name__ == "__main__":
    sys.exit(main())
