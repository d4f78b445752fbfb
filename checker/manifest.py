"""The manifest of expected results (as tlaplus/Examples keeps manifest.json): per policy and
obligation the expected verdict (and counterexample length), per seeded mutation the
obligations that must catch it, per conformant policy the expected non-vacuity witnesses.
Other engineers' sections (state_spaces) are carried through untouched."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Tuple

from kvclaims.errors import UsageError
from kvclaims.inputs import load_json

DEFAULT_PATH = Path(__file__).with_name("manifest.json")
VERDICTS = ("proved", "violated", "unknown")


class ManifestError(Exception):
    pass


def load(path: Path) -> Dict[str, Any]:
    if not Path(path).exists():
        raise ManifestError(f"manifest {path} does not exist")
    try:
        data = load_json(path)
    except UsageError as e:
        raise ManifestError(f"manifest {e}") from None
    if not isinstance(data, dict):
        raise ManifestError(f"manifest {path}: top level must be an object")
    for key in ("verdicts", "mutations", "sometimes"):
        if not isinstance(data.get(key), dict):
            raise ManifestError(f"manifest {path}: missing or malformed '{key}' object")
    for pol, obs in data["verdicts"].items():
        if not isinstance(obs, dict):
            raise ManifestError(f"manifest {path}: verdicts.{pol} must be an object")
        for ob, v in obs.items():
            if not isinstance(v, dict) or v.get("verdict") not in VERDICTS:
                raise ManifestError(f"manifest {path}: verdicts.{pol}.{ob} needs a verdict in "
                                    f"{VERDICTS}")
            if v["verdict"] == "violated" and not isinstance(v.get("depth"), int):
                raise ManifestError(f"manifest {path}: verdicts.{pol}.{ob} is violated "
                                    f"without an integer depth")
    for mut, v in data["mutations"].items():
        if not isinstance(v, dict) or not isinstance(v.get("caught_by"), dict):
            raise ManifestError(f"manifest {path}: mutations.{mut} needs a caught_by object")
    for pol, obs in data.get("any", {}).items():
        if not isinstance(obs, dict) or not all(v in VERDICTS for v in obs.values()):
            raise ManifestError(f"manifest {path}: any.{pol} must map obligations to a "
                                f"verdict in {VERDICTS}")
    for pol, gs in data["sometimes"].items():
        if not isinstance(gs, dict) or not all(
                d is None or d == "unreachable" or (isinstance(d, int) and not isinstance(d, bool))
                for d in gs.values()):
            raise ManifestError(f"manifest {path}: sometimes.{pol} must map goals to a depth, "
                                f"\"unreachable\" or null")
    return data


def compare(manifest, policy_runs, mutation_runs, sometimes_runs) -> List[str]:
    """Mismatches between what ran and what the manifest expects, one line each."""
    bad = []
    for run in policy_runs:
        exp = manifest["verdicts"].get(run.policy)
        if exp is None:
            bad.append(f"{run.policy}: not in the manifest")
            continue
        for v in run.verdicts:
            e = exp.get(v.obligation)
            got = (v.verdict, v.depth if v.verdict == "violated" else None)
            want = (e["verdict"], e.get("depth") if e["verdict"] == "violated" else None) \
                if e else None
            if got != want:
                bad.append(f"{run.policy} {v.obligation}: expected {_fmt(want)}, got {_fmt(got)}")
        # the proofs for any number of slots, where they ran (a pinned "proved" that comes
        # back unknown, e.g. an assumption of the cutoff argument stopped holding, differs)
        pinned = manifest.get("any", {}).get(run.policy)
        if run.cutoff is not None:
            for v in run.any_verdicts:
                want = (pinned or {}).get(v.obligation)
                if want != v.verdict:
                    bad.append(f"{run.policy} {v.obligation} (any slots): expected "
                               f"{want or 'nothing'}, got {v.verdict}"
                               + (f" ({v.note})" if v.verdict != "proved" else ""))
    for run in mutation_runs:
        name = run.policy.split("/", 1)[1]
        exp = manifest["mutations"].get(name)
        got = {v.obligation: v.depth for v in run.verdicts if v.verdict == "violated"}
        if exp is None:
            bad.append(f"mutation {name}: not in the manifest")
        elif not got:
            bad.append(f"mutation {name}: NOT caught by any obligation")
        elif got != exp["caught_by"]:
            bad.append(f"mutation {name}: expected caught by {exp['caught_by']}, got {got}")
    for s in sometimes_runs:
        exp = manifest["sometimes"].get(s.policy, {})
        if s.goal not in exp:
            bad.append(f"sometimes {s.policy} {s.goal}: not in the manifest")
        elif exp[s.goal] != s.outcome:
            bad.append(f"sometimes {s.policy} {s.goal}: expected {_reach(exp[s.goal])}, "
                       f"got {_reach(s.outcome)}")
    return bad


def _reach(v) -> str:
    return {None: "not reached within the bound", "unreachable": "unreachable (proved)"}.get(
        v, f"depth {v}")


def _fmt(v: Tuple) -> str:
    if v is None:
        return "nothing"
    return v[0] + (f" at depth {v[1]}" if v[1] is not None else "")


def updated(manifest, policy_runs, mutation_runs, sometimes_runs) -> Dict[str, Any]:
    """The manifest with the ran sections replaced by what ran (for --write-manifest)."""
    m = dict(manifest)
    m.setdefault("verdicts", {})
    m.setdefault("mutations", {})
    m.setdefault("sometimes", {})
    for run in policy_runs:
        m["verdicts"][run.policy] = {
            v.obligation: ({"verdict": v.verdict, "depth": v.depth} if v.verdict == "violated"
                           else {"verdict": v.verdict}) for v in run.verdicts}
        if run.cutoff is not None:
            m.setdefault("any", {})[run.policy] = {v.obligation: v.verdict
                                                   for v in run.any_verdicts}
    for run in mutation_runs:
        m["mutations"][run.policy.split("/", 1)[1]] = {
            "mutant_of": run.policy.split("/", 1)[0],
            "caught_by": {v.obligation: v.depth for v in run.verdicts
                          if v.verdict == "violated"}}
    for s in sometimes_runs:
        m["sometimes"].setdefault(s.policy, {})[s.goal] = s.outcome
    return m
