"""`kvclaims litmus` (the suite against a target) and `kvclaims sweep` (the 60-resident /
70-active scenario over a range of usable pool sizes, per policy)."""
from __future__ import annotations

import json
from typing import Any, Dict, List

from kvclaims.errors import EXIT_OK, EXIT_UNEXPECTED, UsageError
from kvclaims.limits import MAX_BLOCKS
from kvclaims.options import Parser, int_in
from kvclaims.outputs import check_output_file, write_atomic, write_atomic_with
from kvclaims.spec.actions import Step
from kvclaims.spec.policy import POLICIES
from kvclaims.spec.state import ClaimConfig, Config, RequestConfig, default_cap, default_headroom
from kvclaims.spec.vocab import Mode

from .configio import MODES, resolve_policy, validate
from .litmus import (LITMUS_DIR, TARGETS, load_scenario, load_suite, make_target, observe,
                     run_steps, run_suite, spec_broken, target_class)


# rows of one sweep (pool sizes x policies are each one spec run)
MAX_SWEEP_SIZES = 10_000


def _write_json(path: str, data) -> None:
    write_atomic(path, json.dumps(data, indent=1) + "\n")


def litmus(argv) -> int:
    p = Parser(prog="kvclaims litmus", description="run the litmus suite against a target")
    p.add_argument("scenarios", nargs="*", help="scenario files (default: the whole suite)")
    p.add_argument("--target", default="spec", choices=list(TARGETS),
                   help="the implementation the suite runs on (default: spec)")
    p.add_argument("--policy", action="append", default=[], help="only these policies")
    p.add_argument("--variant", action="append", default=[],
                   help="only these variants (e.g. full, scaled)")
    p.add_argument("--json", nargs="?", const="out/litmus.json", metavar="FILE",
                   help="write the results (default out/litmus.json)")
    a = p.parse_args(argv)
    for n in a.policy:
        resolve_policy(n)
    if a.json:
        check_output_file(a.json, "--json")
    target_class(a.target)
    suite = [load_scenario(s) for s in a.scenarios] if a.scenarios else load_suite(LITMUS_DIR)
    results = run_suite(suite, a.target, a.policy or None, a.variant or None)
    if not results:
        raise UsageError("no litmus case matches the selection")
    print(f"{'litmus':<7}{'variant':<12}{'policy':<16}{'target':<8}result  observation")
    for r in results:
        obs = ", ".join(f"{k}={json.dumps(v)}" for k, v in r.observed.items())
        print(f"{r.litmus:<7}{r.variant:<12}{r.policy:<16}{r.target:<8}"
              f"{'pass' if r.passed else 'FAIL':<8}{obs}")
        for m in r.mismatches:
            print(f"{'':<43}! {m}")
    n_ok = sum(r.passed for r in results)
    print(f"{n_ok}/{len(results)} litmus cases pass on target {a.target}")
    if a.json:
        _write_json(a.json, [r.to_json() for r in results])
    return EXIT_OK if n_ok == len(results) else EXIT_UNEXPECTED


# --- sweep -----------------------------------------------------------------------------------

SWEEP_STEPS = [Step("materialize", (0,)), Step("submit", (0,)), Step("accept", (0,)),
               Step("reject", (0,)), Step("admit", (0,)), Step("defer", (0,)),
               Step("demote", (0, 0)), Step("admit", (0,)), Step("refuse", (0,))]


def _outcome(obs: Dict[str, Any], taken: List[str]) -> str:
    if obs["claim_status"] == "REJECTED":
        # acceptance control kept the headroom: the claim was never taken on
        return "claim_rejected_" + ("serve" if obs["served"] else obs["request_status"])
    if obs["served"]:
        if "demote" in taken:
            return "demote_then_serve"
        if not obs["admit_future_reuse"] and obs["resident_victims"]:
            return "serve_no_admit"
        return "evict_resident" if obs["resident_victims"] else "serve_preserve"
    return obs["request_status"] or "none"


def sweep_rows(resident: int, active: int, sizes: List[int], policies: List[str],
               target: str = "spec", mode: Mode = Mode.HARD_PROTECTED, headroom=None,
               notes: List[str] = None) -> List[Dict[str, Any]]:
    """One row per (size, policy).  A size that cannot hold the claim's object at all is
    skipped with a note (in `notes`) instead of aborting the sweep."""
    rows = []
    for usable in sizes:
        if resident > usable:
            if notes is not None:
                notes.append(f"usable {usable}: skipped, the {resident}-block claim does not "
                             f"fit in the pool")
            continue
        room = default_headroom(usable) if headroom is None else headroom
        cfg = Config(usable=usable, cap=default_cap(usable, room),
                     claims=(ClaimConfig(footprint=resident, pred_start=0, pred_len=resident,
                                         mode=int(mode), owner=0, identity=0),),
                     requests=(RequestConfig(need=active),), headroom=room)
        validate(cfg)
        for pname in policies:
            pol = resolve_policy(pname)
            tgt = make_target(target)
            tgt.reset(cfg, pol)
            taken, _ = run_steps(tgt, SWEEP_STEPS)
            labels = [st.action for st, _ in taken]
            obs = observe(cfg, pol, tgt.view(), tgt.events(), spec_broken(cfg, pol, taken))
            rows.append({"usable": usable, "policy": pname, "target": target,
                         "active_served": obs["served"],
                         "resident_preserved": obs["predicate"],
                         "resident_blocks_lost": resident - obs["surviving_blocks"],
                         "claims_harmed": obs["harm_events"],
                         "claim_status": obs["claim_status"].lower(),
                         "outcome": _outcome(obs, labels),
                         "broken_obligations": obs["broken_obligations"]})
    return rows


def _plot(rows, policies, path: str, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    outcomes = sorted({r["outcome"] for r in rows})
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    # policies that lose the same blocks draw the same line: offset each a little and give it
    # its own marker and dash, so hard_demote's line cannot hide native's
    markers, dashes = "osD^vP*X", ["-", "--", "-.", ":"]
    for k, pname in enumerate(policies):
        rs = [r for r in rows if r["policy"] == pname]
        xs = [r["usable"] for r in rs]
        off = (k - len(policies) / 2) * 0.4
        ax1.plot(xs, [r["resident_blocks_lost"] + off for r in rs],
                 marker=markers[k % len(markers)], ls=dashes[k % len(dashes)], ms=4,
                 label=pname)
        ax2.scatter(xs, [outcomes.index(r["outcome"]) + (k - len(policies) / 2) * 0.06
                         for r in rs], s=14, marker=markers[k % len(markers)], label=pname)
    ax1.set_ylabel("resident blocks lost (policies offset)")
    ax1.set_title(title)
    ax1.legend(fontsize=7, ncol=2)
    ax2.set_yticks(range(len(outcomes)), outcomes)
    ax2.set_xlabel("usable pool blocks")
    ax2.set_ylabel("outcome")
    fig.tight_layout()
    write_atomic_with(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)


def sweep(argv) -> int:
    blocks = int_in(1, MAX_BLOCKS)
    p = Parser(prog="kvclaims sweep", description="capacity sweep of the 60/70 scenario")
    p.add_argument("--resident", type=blocks, default=60,
                   help="blocks of the resident claim (default 60)")
    p.add_argument("--active", type=blocks, default=70,
                   help="live blocks the active request needs (default 70)")
    p.add_argument("--from", dest="lo", type=blocks, default=60,
                   help="smallest usable pool (default 60)")
    p.add_argument("--to", dest="hi", type=blocks, default=140,
                   help="largest usable pool (default 140)")
    p.add_argument("--step", type=blocks, default=10, help="pool size step (default 10)")
    p.add_argument("--sizes", help="explicit comma-separated usable pool sizes (instead of "
                                   "--from/--to/--step)")
    p.add_argument("--headroom", type=int_in(0, MAX_BLOCKS),
                   help="active headroom (default a quarter of each pool; cap = usable - "
                        "headroom)")
    p.add_argument("--mode", default="hard_protected",
                   help="protection mode of the claim (default hard_protected)")
    p.add_argument("--policy", action="append", default=[],
                   help="only these policies, repeatable (default: every named policy)")
    p.add_argument("--target", default="spec", choices=list(TARGETS),
                   help="the implementation swept (default: spec)")
    p.add_argument("--json", nargs="?", const="out/sweep.json", metavar="FILE",
                   help="write the rows as JSON (default out/sweep.json)")
    p.add_argument("--plot", metavar="FILE.png", help="draw the sweep (needs matplotlib)")
    a = p.parse_args(argv)
    if a.sizes is not None:
        try:
            sizes = [int(x) for x in a.sizes.split(",") if x.strip()]
        except ValueError:
            raise UsageError(f"--sizes {a.sizes[:80]!r}: expected comma-separated integers") \
                from None
        if not sizes or min(sizes) < 1 or max(sizes) > MAX_BLOCKS:
            raise UsageError(f"--sizes needs pool sizes between 1 and {MAX_BLOCKS}")
    else:
        if a.lo > a.hi:
            raise UsageError("need --from <= --to")
        sizes = list(range(a.lo, a.hi + 1, a.step))
    if len(sizes) > MAX_SWEEP_SIZES:
        raise UsageError(f"{len(sizes)} pool sizes, more than the limit of {MAX_SWEEP_SIZES}: "
                         f"raise --step")
    if a.mode.lower() not in MODES:
        raise UsageError(f"unknown protection mode {a.mode!r} (choose from {', '.join(MODES)})")
    pols = a.policy or list(POLICIES)
    for n in pols:
        resolve_policy(n)
    if a.json:
        check_output_file(a.json, "--json")
    if a.plot:
        check_output_file(a.plot, "--plot", ".png")
        try:
            import matplotlib  # noqa: F401  (checked before the sweep, used after it)
        except ImportError:
            raise UsageError("--plot needs matplotlib: pip install 'kvclaims[plot]'") from None
    target_class(a.target)
    notes: List[str] = []
    rows = sweep_rows(a.resident, a.active, sizes, pols, a.target, Mode(MODES[a.mode.lower()]),
                      a.headroom, notes)
    print(f"{'usable':>6}  {'policy':<15}{'served':<8}{'preserved':<11}{'lost':>5}"
          f"{'harmed':>8}  outcome")
    for r in rows:
        print(f"{r['usable']:>6}  {r['policy']:<15}{str(r['active_served']):<8}"
              f"{str(r['resident_preserved']):<11}{r['resident_blocks_lost']:>5}"
              f"{r['claims_harmed']:>8}  {r['outcome']}")
    for n in notes:
        print(f"note: {n}")
    if a.json:
        _write_json(a.json, rows)
    if a.plot:
        _plot(rows, pols, a.plot, f"{a.resident}-block {a.mode.lower()} claim vs "
                                  f"{a.active}-block active request")
    return EXIT_OK
