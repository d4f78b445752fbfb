"""`kvclaims explore`: exhaustive bounded exploration of the spec for one configuration.

The configuration comes from --config FILE (TOML or JSON, see checker/configs/) or from
options (--usable, --cap, --claim, --request).  Exit 0 when no conformant policy violates an
obligation, 12 when one does, 2 on bad input."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kvclaims.errors import EXIT_OK, EXIT_UNEXPECTED, UsageError
from kvclaims.spec.state import Config, RequestConfig, default_cap, default_headroom

from .configio import config_to_dict, load_config, parse_claim_option, policies, validate


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def parser(prog: str) -> _Parser:
    p = _Parser(prog=prog, description=__doc__.splitlines()[0])
    p.add_argument("--config", help="configuration file (.toml or .json)")
    p.add_argument("--usable", type=int, help="usable pool blocks")
    p.add_argument("--cap", type=int, help="cap on protected footprint (default: usable)")
    p.add_argument("--claim", action="append", default=[],
                   help="FOOTPRINT[:PRED_LEN[:MODE[:DURATION]]], repeatable")
    p.add_argument("--request", action="append", default=[], type=int,
                   help="live blocks a request needs, repeatable")
    p.add_argument("--policy", action="append", default=[],
                   help="policy or mutation name, repeatable (default: all policies)")
    return p


def config_from_args(a) -> Config:
    if a.config:
        if a.usable is not None or a.claim or a.request:
            raise UsageError("give the configuration either as --config or as options, not both")
        return load_config(a.config)
    if a.usable is None:
        raise UsageError("no configuration: give --config FILE or --usable N")
    headroom = default_headroom(a.usable)
    cfg = Config(usable=a.usable,
                 cap=a.cap if a.cap is not None else default_cap(a.usable, headroom),
                 claims=tuple(parse_claim_option(c, i) for i, c in enumerate(a.claim)),
                 requests=tuple(RequestConfig(need=n) for n in a.request), headroom=headroom)
    validate(cfg)
    return cfg


def main(argv) -> int:
    p = parser("kvclaims explore")
    p.add_argument("--max-depth", type=int, help="depth bound (default: exhaustive)")
    p.add_argument("--max-clock", type=int, default=2, help="clock bound (default 2)")
    p.add_argument("--no-symmetry", action="store_true", help="explore every permutation")
    p.add_argument("--max-states", type=int, help="stop after this many distinct states")
    p.add_argument("--graph", action="store_true",
                   help="build the state graph (networkx) and print its statistics")
    p.add_argument("--out", default="out", help="where counterexample traces go (default out/)")
    p.add_argument("--no-traces", action="store_true", help="do not write ITF traces")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.add_argument("--check-manifest", action="store_true",
                   help="explore the reference configurations and compare their state counts "
                        "with checker/manifest.json (exit 12 on a difference)")
    p.add_argument("--update-manifest", action="store_true",
                   help="re-pin the reference state counts in checker/manifest.json")
    p.add_argument("--replay", metavar="TRACE.itf.json",
                   help="replay an ITF trace through the spec and confirm its violation")
    a = p.parse_args(argv)
    if a.replay:
        return _replay(a.replay)
    if a.check_manifest or a.update_manifest:
        return _manifest(a.update_manifest)
    cfg = config_from_args(a)
    pols = policies(a.policy)
    for n, v in (("--max-depth", a.max_depth), ("--max-clock", a.max_clock),
                 ("--max-states", a.max_states)):
        if v is not None and v < 0:
            raise UsageError(f"{n} must be >= 0")
    from .explore import Progress, explore, graph_stats
    from .traces import save_counterexample
    results, unexpected = [], False
    for pol in pols:
        r = explore(cfg, pol, max_depth=a.max_depth, max_clock=a.max_clock,
                    symmetry=not a.no_symmetry, graph=a.graph, progress=Progress(),
                    max_states=a.max_states)
        print(r.summary())
        row = r.to_json()
        if a.graph:
            row["graph"] = graph_stats(r.graph)
            print("  graph: " + ", ".join(f"{k} {v}" for k, v in row["graph"].items()))
        if not a.no_traces:
            row["traces"] = {ob: save_counterexample(tr, Path(a.out), source="kvclaims explore")
                             for ob, tr in sorted(r.traces.items())}
            for ob, path in row["traces"].items():
                print(f"  {ob}: {path}")
        if pol.conformant and r.traces:
            unexpected = True
        results.append(row)
    if a.json:
        Path(a.json).write_text(json.dumps({"config": config_to_dict(cfg), "runs": results},
                                           indent=1) + "\n")
    return EXIT_UNEXPECTED if unexpected else EXIT_OK


def _replay(path: str) -> int:
    from .configio import resolve_policy
    from .itf import ItfError, read_itf
    from .replay import ReplayError, replay
    try:
        tr = read_itf(path)
    except ItfError as e:
        raise UsageError(str(e))
    pol = resolve_policy(tr.policy)
    try:
        states = replay(tr.config, pol, tr.steps, violates=tr.goal or None)
    except ReplayError as e:
        print(f"{path}: does not replay: {e}")
        return EXIT_UNEXPECTED
    if states != tr.states:
        print(f"{path}: replays, but its recorded states differ from the spec's")
        return EXIT_UNEXPECTED
    print(f"{path}: {tr.depth} steps replay through the spec under {tr.policy}"
          + (f" and violate {tr.goal}" if tr.goal else ""))
    return EXIT_OK


def _manifest(update: bool) -> int:
    from .state_spaces import compute, load_pinned, mismatches, write_pinned
    now = compute()
    if update:
        write_pinned(now)
        print(f"pinned {len(now)} reference state spaces in checker/manifest.json")
        return EXIT_OK
    bad = mismatches(load_pinned(), now)
    for name, e in now.items():
        for pol, row in e["policies"].items():
            print(f"{name}/{pol}: " + ", ".join(
                f"{k.replace('_', ' ')} {v['distinct_states']} states depth {v['depth']}"
                for k, v in row.items()))
    for b in bad:
        print(f"MISMATCH {b}")
    print("state spaces as pinned" if not bad else f"{len(bad)} state-space mismatch(es)")
    return EXIT_UNEXPECTED if bad else EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
