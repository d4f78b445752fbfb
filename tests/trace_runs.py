"""Traces the project writes itself, for `kvclaims validate`'s tests and benchmark: every
litmus run on the spec and on the MicroRuntime as telemetry files, in the project's schema and
(through checker/export_artifact_v1.py) in the artifact's schema 1, with the obligations the
litmus suite says each run breaks."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List

from kvclaims.checker.configio import config_to_dict, resolve_policy
from kvclaims.checker.litmus import load_suite, make_target, run_steps, spec_broken
from kvclaims.model.telemetry import SCHEMA_VERSION, dump_jsonl
from kvclaims.spec.state import Config


@dataclass(frozen=True)
class Run:
    litmus: str
    variant: str
    policy: str
    target: str
    broken: tuple                  # obligations the litmus suite says the run breaks
    events: tuple

    @property
    def name(self) -> str:
        return f"{self.litmus}-{self.variant}-{self.policy}-{self.target}"


def spec_telemetry(cfg: Config, policy: str, events: List[Dict[str, Any]]) -> List[Dict]:
    """The spec's own events as telemetry: slot numbers become ids (claim i is on object i,
    the spec's convention), and claim events say what the claim is, as a runtime's do."""
    cd = config_to_dict(cfg)
    out = []
    for n, e in enumerate(events, start=1):
        ev = {"schema_version": SCHEMA_VERSION, "seq": n, "ts": float(n), "run_id": "spec",
              "policy": policy, "usable_blocks": cfg.usable, **e}
        ev["seq"] = n
        for f, prefix in (("claim_id", "c"), ("request_id", "r"), ("object_id", "obj")):
            if isinstance(ev.get(f), int) and not isinstance(ev.get(f), bool):
                ev[f] = f"{prefix}{ev[f]}"
        if (e["type"] == "conflict" and e.get("arbiter_action") == "defer"
                and resolve_policy(policy).bounded_response):
            ev["response_ticks"] = cfg.response_ticks     # the runtime's stated bound (O14)
        if "blocking_claim_ids" in ev:
            ev["blocking_claim_ids"] = [f"c{i}" for i, b in enumerate(ev["blocking_claim_ids"])
                                        if b]
        if e["type"].startswith("claim_") and isinstance(e.get("claim_id"), int):
            c = cd["claims"][e["claim_id"]]
            ev.update(object_id=f"obj{e['claim_id']}", protection_mode=c["mode"],
                      predicate={"kind": "contiguous_range", "start": c["pred_start"],
                                 "k": c["pred_len"]},
                      footprint_blocks=c["footprint"], duration=c["duration"] or None,
                      owner_scope=f"tenant{c['owner']}",
                      cache_identity={"domain": c["identity"]})
        out.append(ev)
    return out


def raw_telemetry(target) -> List[Dict[str, Any]]:
    """What a target logged as JSON Lines events: the MicroRuntime's and the vLLM claim
    arbiter's telemetry as written, not the targets' slot-number abstraction of it."""
    if hasattr(target, "rt"):
        return target.rt.telemetry.events
    return target.arb.telemetry.events


def litmus_runs(targets=("spec", "model"), policies=None) -> List[Run]:
    out = []
    for sc in load_suite():
        for variant, pols in sc.expect.items():
            for p in pols:
                if policies is not None and p not in policies:
                    continue
                for tname in targets:
                    cfg, pol = sc.variants[variant], resolve_policy(p)
                    t = make_target(tname)
                    t.reset(cfg, pol)
                    taken, _ = run_steps(t, sc.steps)   # its own decisions included
                    broken = tuple(spec_broken(cfg, pol, taken))
                    evs = (spec_telemetry(cfg, p, t.events()) if tname == "spec"
                           else raw_telemetry(t))
                    out.append(Run(sc.id, variant, p, tname, broken,
                                   tuple(dict(e) for e in evs)))
    return out


def write(run: Run, directory: Path) -> Path:
    path = Path(directory) / f"{run.name}.jsonl"
    dump_jsonl(run.events, str(path))
    return path
