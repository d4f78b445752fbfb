"""`kvclaims refine`: run the MicroRuntime on spec traces and check every step against the spec.

  kvclaims refine TRACE [...]                 ITF traces (or {"policy", "config", "steps"});
                                              a directory: every *.itf.json below it
  kvclaims refine --counterexample POLICY:OB  the checker's shortest counterexample, found now

Exit 0: every step refines (bad policies may break obligations: that is reported, not an
error); 12: a divergence; 2: bad usage or an unreadable trace."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Tuple

from kvclaims.checker.configio import config_from_dict, resolve_policy
from kvclaims.checker.litmus import TARGETS, make_target, target_class
from kvclaims.checker.steps import check_action, check_step
from kvclaims.errors import EXIT_OK, EXIT_UNEXPECTED, UsageError, shown
from kvclaims.inputs import load_json
from kvclaims.limits import MAX_TRACE_STATES
from kvclaims.options import Parser
from kvclaims.spec.actions import Step
from kvclaims.spec.state import Config

from .check import check_refinement


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


def _plain_step(s: Any, where: str) -> Step:
    if not isinstance(s, dict):
        raise UsageError(f"{where}: a step must be an object with 'action'")
    extra = set(s) - {"action", "slots", "choices"}
    if extra:
        raise UsageError(f"{where}: unknown field(s) {', '.join(sorted(map(str, extra)))}")
    slots = s.get("slots", [])
    choices = s.get("choices") or {}
    if not isinstance(slots, list):
        raise UsageError(f"{where}: 'slots' must be a list, got {shown(slots)}")
    if not isinstance(choices, dict):
        raise UsageError(f"{where}: 'choices' must be an object, got {shown(choices)}")
    return Step(check_action(s.get("action"), where), tuple(slots),
                tuple(sorted(choices.items())))


def load_plain(d: Dict[str, Any], path: str) -> Tuple[str, Config, List[Step]]:
    """The plain JSON form {"policy", "config", "steps": [{action, slots, choices}]}, with
    the configuration in the one codec's form (config_to_dict's output reads back)."""
    for k in ("policy", "config", "steps"):
        if k not in d:
            raise UsageError(f"{path}: missing '{k}' (a trace has policy, config and steps)")
    pol = resolve_policy(d["policy"])
    try:
        cfg = config_from_dict(d["config"])
    except UsageError as e:
        raise UsageError(f"{path}: config: {e}") from None
    if not isinstance(d["steps"], list) or len(d["steps"]) > MAX_TRACE_STATES:
        raise UsageError(f"{path}: 'steps' must be a list of at most {MAX_TRACE_STATES}")
    steps = [check_step(cfg, pol, _plain_step(s, f"{path}: steps[{n}]"), f"{path}: steps[{n}]")
             for n, s in enumerate(d["steps"])]
    return d["policy"], cfg, steps


def load_trace(path: str) -> Tuple[str, Config, List[Step]]:
    """An ITF trace (checker/itf.py: policy and config in #meta), or plain JSON with
    policy, config and steps."""
    d = load_json(path)
    if isinstance(d, dict) and ("#meta" in d or "states" in d):   # ITF, however damaged
        from kvclaims.checker.itf import trace_from_itf
        tr = trace_from_itf(d, path)
        return tr.policy, tr.config, tr.steps
    if not isinstance(d, dict):
        raise UsageError(f"{path}: not a trace (an ITF trace or an object with policy, config "
                         f"and steps)")
    return load_plain(d, path)


def main(argv) -> int:
    ap = Parser(prog="kvclaims refine", description=__doc__.splitlines()[0])
    ap.add_argument("traces", nargs="*",
                    help="ITF or plain JSON trace files; a directory: every *.itf.json below it")
    ap.add_argument("--counterexample", action="append", default=[], metavar="POLICY:OB",
                    help="also refine the checker's shortest counterexample to obligation OB "
                         "under POLICY, found now (repeatable)")
    ap.add_argument("--json", action="store_true", help="print the reports as JSON")
    ap.add_argument("--target", default="model", choices=list(TARGETS),
                    help="the implementation replayed against the spec (default: model)")
    a = ap.parse_args(argv)
    if not a.traces and not a.counterexample:
        raise UsageError("give trace files or --counterexample POLICY:OBLIGATION")
    from kvclaims.spec.obligations import OBLIGATIONS
    target_class(a.target)
    wanted = []      # every argument checked before any search or replay starts
    for spec in a.counterexample:
        pol_name, _, ob = spec.partition(":")
        pol = resolve_policy(pol_name)
        if ob not in OBLIGATIONS:
            raise UsageError(f"--counterexample {shown(spec)}: unknown obligation {shown(ob)}")
        wanted.append((spec, pol_name, pol, ob))
    jobs = [load_trace(p) + (p,) for p in trace_files(a.traces)]
    for spec, pol_name, pol, ob in wanted:
        from kvclaims.checker.bmc import bmc
        tr = bmc(pol, [ob], max_depth=8).found.get(ob)
        if tr is None:
            raise UsageError(f"{pol_name} has no counterexample to {ob} within 8 steps")
        jobs.append((pol_name, tr.config, tr.steps, spec))
    out, bad = [], 0
    for pol_name, cfg, steps, label in jobs:
        pol = resolve_policy(pol_name)
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
