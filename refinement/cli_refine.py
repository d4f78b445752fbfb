"""`kvclaims refine`: run the MicroRuntime on spec traces and check every step against the spec.

  kvclaims refine TRACE [...]                 ITF traces (or {"policy", "config", "steps"});
                                              a directory: every *.itf.json below it
  kvclaims refine --counterexample POLICY:OB  the checker's shortest counterexample, found now

Exit 0: every step refines (bad policies may break obligations: that is reported, not an
error); 12: a divergence; 2: bad usage or an unreadable trace."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Dict, List, Tuple

from kvclaims.errors import EXIT_OK, EXIT_UNEXPECTED, UsageError
from kvclaims.spec.actions import Step
from kvclaims.spec.policy import policy_by_name
from kvclaims.spec.state import DEFAULT_RESPONSE_TICKS, ClaimConfig, Config, RequestConfig

from .check import check_refinement
from kvclaims.checker.litmus import make_target


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def config_from_json(d: Dict[str, Any]) -> Config:
    return Config(usable=d["usable"], cap=d["cap"],
                  claims=tuple(ClaimConfig(**c) for c in d["claims"]),
                  requests=tuple(RequestConfig(**r) for r in d["requests"]),
                  headroom=d.get("headroom", 0),
                  response_ticks=d.get("response_ticks", DEFAULT_RESPONSE_TICKS))


def trace_files(paths: List[str]) -> List[str]:
    """Files as given; a directory stands for every *.itf.json below it (the checker's
    out/<policy>/<obligation>/trace.itf.json)."""
    out = []
    for p in paths:
        if Path(p).is_dir():
            found = sorted(str(x) for x in Path(p).rglob("*.itf.json"))
            if not found:
                raise UsageError(f"{p}: no *.itf.json trace below it")
            out += found
        else:
            out.append(p)
    return out


def load_trace(path: str) -> Tuple[str, Config, List[Step]]:
    """An ITF trace (checker/itf.py: policy and config in #meta), or plain JSON with
    policy, config and steps."""
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
        if isinstance(d, dict) and "#meta" in d and "states" in d:
            from kvclaims.checker.itf import ItfError, trace_from_itf
            try:
                tr = trace_from_itf(d, path)
            except ItfError as e:
                raise UsageError(str(e)) from None
            return tr.policy, tr.config, tr.steps
        steps = [Step(s["action"], tuple(s.get("slots", ())),
                      tuple(sorted((s.get("choices") or {}).items()))) for s in d["steps"]]
        return d["policy"], config_from_json(d["config"]), steps
    except OSError as e:
        raise UsageError(f"{path}: cannot read: {e.strerror}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise UsageError(f"{path}: not a trace with policy, config and steps ({e})") from None


def main(argv) -> int:
    ap = _Parser(prog="kvclaims refine", description=__doc__.splitlines()[0])
    ap.add_argument("traces", nargs="*")
    ap.add_argument("--counterexample", action="append", default=[], metavar="POLICY:OB")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--target", default="model", help="a target of kvclaims.checker.litmus.TARGETS")
    a = ap.parse_args(argv)
    if not a.traces and not a.counterexample:
        raise UsageError("give trace files or --counterexample POLICY:OBLIGATION")
    jobs = [load_trace(p) + (p,) for p in trace_files(a.traces)]
    for spec in a.counterexample:
        pol_name, _, ob = spec.partition(":")
        try:
            pol = policy_by_name(pol_name)
        except KeyError:
            raise UsageError(f"unknown policy {pol_name!r}") from None
        from kvclaims.checker.bmc import bmc
        from kvclaims.spec.obligations import OBLIGATIONS
        if ob not in OBLIGATIONS:
            raise UsageError(f"unknown obligation {ob!r}")
        tr = bmc(pol, [ob], max_depth=8).found.get(ob)
        if tr is None:
            raise UsageError(f"{pol_name} has no counterexample to {ob} within 8 steps")
        jobs.append((pol_name, tr.config, tr.steps, spec))
    out, bad = [], 0
    for pol_name, cfg, steps, label in jobs:
        try:
            pol = policy_by_name(pol_name)
        except KeyError:
            raise UsageError(f"{label}: unknown policy {pol_name!r}") from None
        rep = check_refinement(make_target(a.target), cfg, pol, steps)
        bad += not rep.ok
        out.append({"trace": label, **rep.to_json()})
        if not a.json:
            fb = rep.first_broken()
            print(f"{label}: {'refines' if rep.ok else 'DIVERGES'} ({len(rep.steps)} steps, "
                  f"declined {[s.index for s in rep.declined]})"
                  + (f"; breaks {', '.join(fb[1])} at step {fb[0]}" if fb else ""))
            if rep.divergence:
                print("  " + rep.divergence.describe())
    if a.json:
        print(json.dumps(out, indent=1))
    return EXIT_UNEXPECTED if bad else EXIT_OK
