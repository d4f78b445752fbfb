"""Pinned state spaces: the `state_spaces` key of checker/manifest.json.

For each reference configuration, the distinct-state count and BFS depth of the exhaustive
(clock-bounded) exploration, per policy, with and without symmetry reduction.  A spec change
that grows or shrinks a state space shows up as a mismatch (`kvclaims explore --check-manifest`,
run by `make check-spec`), as stateright's and tlaplus/Examples' pinned counts do."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

from kvclaims.errors import UsageError
from kvclaims.inputs import load_json
from kvclaims.outputs import write_atomic

from .configio import config_from_dict, config_to_dict, resolve_policy
from .explore import explore

MANIFEST = Path(__file__).with_name("manifest.json")
KEY = "state_spaces"

# name -> (what it is for, configuration, max_clock, policies)
REFERENCE = {
    "one_claim": (
        "One hard claim (footprint 3, leading_prefix_at_least(2)) and one request of 3 in a pool "
        "of 4: the smallest configuration where a conflict, an eviction and every bad policy's "
        "first violation happen; the explorer/z3 agreement runs on it.",
        {"usable": 4, "cap": 3, "claims": [{"footprint": 3, "pred_len": 2}],
         "requests": [{"need": 3}]},
        2, ("hard_refuse", "hard_demote", "native")),
    "expiring": (
        "One expiring claim (duration 1) and one request: the clock matters, so time-shift "
        "symmetry must leave the count unchanged (with = without).",
        {"usable": 4, "cap": 3, "claims": [{"footprint": 3, "mode": "expiring", "duration": 1}],
         "requests": [{"need": 3}]},
        2, ("hard_refuse",)),
    "pair": (
        "Two interchangeable single-block claims and two interchangeable requests of 2 in a pool "
        "of 4: what claim/request symmetry (and time-shift symmetry) saves.",
        {"usable": 4, "cap": 3, "claims": [{"footprint": 1}, {"footprint": 1}],
         "requests": [{"need": 2}, {"need": 2}]},
        1, ("hard_refuse",)),
}


def compute() -> Dict[str, Any]:
    out = {}
    for name, (purpose, cfgd, max_clock, pols) in REFERENCE.items():
        cfg = config_from_dict(cfgd)
        counts = {}
        for p in pols:
            row = {}
            for sym in (False, True):
                r = explore(cfg, resolve_policy(p), max_clock=max_clock, symmetry=sym,
                            traces=False)
                row["symmetry" if sym else "no_symmetry"] = {"distinct_states": r.distinct,
                                                             "depth": r.depth}
            counts[p] = row
        out[name] = {"purpose": purpose, "config": config_to_dict(cfg),
                     "max_clock": max_clock, "policies": counts}
    return out


def load_pinned(path: Path = MANIFEST) -> Dict[str, Any]:
    data = load_json(path)
    pinned = data.get(KEY, {}) if isinstance(data, dict) else None
    if not isinstance(pinned, dict) or not all(isinstance(e, dict) for e in pinned.values()):
        raise UsageError(f"{path}: '{KEY}' must map configuration names to objects")
    return pinned


def mismatches(pinned: Dict[str, Any], now: Dict[str, Any]) -> List[str]:
    bad = []
    for name in sorted(set(pinned) | set(now)):
        if name not in pinned:
            bad.append(f"{name}: not pinned in the manifest")
            continue
        if name not in now:
            bad.append(f"{name}: pinned but no longer a reference configuration")
            continue
        for pol in sorted(set(pinned[name]["policies"]) | set(now[name]["policies"])):
            a = pinned[name]["policies"].get(pol)
            b = now[name]["policies"].get(pol)
            if a != b:
                bad.append(f"{name}/{pol}: pinned {json.dumps(a)}, explored {json.dumps(b)}")
        if pinned[name].get("config") != now[name]["config"]:
            bad.append(f"{name}: configuration differs from the pinned one")
    return bad


def write_pinned(now: Dict[str, Any], path: Path = MANIFEST) -> None:
    """Replace only this key of the manifest."""
    p = Path(path)
    data = load_json(p) if p.exists() else {}
    data[KEY] = now
    write_atomic(p, json.dumps(data, indent=1) + "\n")
