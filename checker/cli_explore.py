"""`kvclaims explore`: exhaustive bounded exploration of the spec for one configuration.

The configuration comes from --config FILE (TOML or JSON with usable, cap, claims and
requests; claims as in docs/CONTRACT.md section 3) or from options (--usable, --cap, --claim,
--request).  Exit 0 when no conformant policy violates an
obligation, 12 when one does, 2 on bad input."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from kvclaims.errors import EXIT_OK, EXIT_UNEXPECTED, UsageError
from kvclaims.limits import MAX_BLOCKS
from kvclaims.options import Parser, int_in
from kvclaims.outputs import check_output_dir, check_output_file, write_atomic
from kvclaims.spec.state import Config

from .configio import config_from_dict, config_to_dict, load_config, parse_claim_option, policies

# Explicit-state search enumerates victim choices block by block and claim orders slot by
# slot: beyond these sizes it runs for hours.  `kvclaims check` proves the obligations for
# every pool size (its encoding is parametric), so large pools belong there.
MAX_EXPLORE_BLOCKS = 128
MAX_EXPLORE_SLOTS = 4
# Distinct states kept in memory unless --max-states says otherwise (about 1 GB).
DEFAULT_MAX_STATES = 2_000_000


def parser(prog: str) -> Parser:
    p = Parser(prog=prog, description=__doc__.splitlines()[0])
    p.add_argument("--config", help="configuration file (.toml or .json)")
    p.add_argument("--usable", type=int_in(0, MAX_BLOCKS), help="usable pool blocks")
    p.add_argument("--cap", type=int_in(0, MAX_BLOCKS),
                   help="cap on protected footprint (default: usable)")
    p.add_argument("--claim", action="append", default=[],
                   help="FOOTPRINT[:PRED_LEN[:MODE[:DURATION]]], repeatable")
    p.add_argument("--request", action="append", default=[], type=int_in(0, MAX_BLOCKS),
                   help="live blocks a request needs, repeatable")
    p.add_argument("--policy", action="append", default=[],
                   help="policy or mutation name, repeatable (default: all policies)")
    return p


def config_from_args(a) -> Config:
    """Options are one more spelling of the configuration: they go through the same codec
    as files."""
    if a.config:
        if a.usable is not None or a.cap is not None or a.claim or a.request:
            raise UsageError("give the configuration either as --config or as options, not both")
        return load_config(a.config)
    if a.usable is None:
        raise UsageError("no configuration: give --config FILE or --usable N")
    d = {"usable": a.usable,
         "claims": [parse_claim_option(c) for c in a.claim],
         "requests": [{"need": n} for n in a.request]}
    if a.cap is not None:
        d["cap"] = a.cap
    return config_from_dict(d)


def _explorable(cfg: Config) -> None:
    if cfg.usable > MAX_EXPLORE_BLOCKS:
        raise UsageError(f"usable = {cfg.usable}: explicit-state exploration is limited to "
                         f"{MAX_EXPLORE_BLOCKS} blocks (kvclaims check covers every pool size)")
    if max(cfg.K, cfg.R) > MAX_EXPLORE_SLOTS:
        raise UsageError(f"explicit-state exploration is limited to {MAX_EXPLORE_SLOTS} claims "
                         f"and {MAX_EXPLORE_SLOTS} requests")


def main(argv) -> int:
    p = parser("kvclaims explore")
    p.add_argument("--max-depth", type=int_in(0, 1_000_000),
                   help="depth bound (default: exhaustive)")
    p.add_argument("--max-clock", type=int_in(0, 1_000), default=2,
                   help="clock bound (0..1000, default 2)")
    p.add_argument("--no-symmetry", action="store_true", help="explore every permutation")
    p.add_argument("--max-states", type=int_in(1, 100_000_000), default=DEFAULT_MAX_STATES,
                   help=f"stop after this many distinct states (default {DEFAULT_MAX_STATES:,};"
                        f" the result then holds only to that bound)")
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
    _explorable(cfg)
    pols = policies(a.policy)
    if not a.no_traces:
        check_output_dir(a.out, "--out")
    if a.json:
        check_output_file(a.json, "--json")
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
        write_atomic(a.json, json.dumps({"config": config_to_dict(cfg), "runs": results},
                                        indent=1) + "\n")
    return EXIT_UNEXPECTED if unexpected else EXIT_OK


def _replay(path: str) -> int:
    from .configio import resolve_policy
    from .itf import read_itf
    from .replay import ReplayError, replay
    tr = read_itf(path)
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
