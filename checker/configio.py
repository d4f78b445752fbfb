"""Bounded configurations as users write them (options, TOML or JSON files), validated with the
spec's own well-formedness conditions, and policy names resolved.  Bad input raises
kvclaims.cli.UsageError with one clear line."""
from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any, Dict, List

from kvclaims.cli import UsageError
from kvclaims.spec.algebra import CONCRETE
from kvclaims.spec.obligations import config_errors
from kvclaims.spec.policy import MUTATIONS, POLICIES, Policy
from kvclaims.spec.state import (DEFAULT_RESPONSE_TICKS, ClaimConfig, Config, RequestConfig,
                                 default_cap, default_headroom)
from kvclaims.spec.vocab import Mode

MODES = {m.name.lower(): int(m) for m in Mode}


def resolve_policy(name: str) -> Policy:
    """A policy by name: a named policy, a mutation key, or a mutation's full name."""
    if name in POLICIES:
        return POLICIES[name]
    if name in MUTATIONS:
        return MUTATIONS[name]
    for p in MUTATIONS.values():
        if p.name == name:
            return p
    raise UsageError(f"unknown policy '{name}' (choose from {', '.join(POLICIES)} or a mutation: "
                     f"{', '.join(MUTATIONS)})")


def policies(names: List[str]) -> List[Policy]:
    if not names or names == ["all"]:
        return list(POLICIES.values())
    return [resolve_policy(n) for n in names]


_PRED = re.compile(r"^\s*(leading_prefix_at_least|contiguous_range)\s*\(\s*(\d+)\s*"
                   r"(?:,\s*(\d+)\s*)?\)\s*$")


def _int(d: Dict[str, Any], key: str, default=None, where="") -> int:
    v = d.get(key, default)
    if v is None:
        raise UsageError(f"{where}missing '{key}'")
    if isinstance(v, bool) or not isinstance(v, int):
        raise UsageError(f"{where}'{key}' must be an integer, got {v!r}")
    return v


def _mode(v, where) -> int:
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in MODES:
        return MODES[v.lower()]
    raise UsageError(f"{where}unknown protection mode {v!r} (choose from {', '.join(MODES)})")


def claim_from_dict(d: Dict[str, Any], i: int) -> ClaimConfig:
    where = f"claim {i}: "
    if not isinstance(d, dict):
        raise UsageError(f"{where}must be a table/object")
    known = {"footprint", "footprint_blocks", "predicate", "pred_start", "pred_len", "mode",
             "protection_mode", "owner", "identity", "duration"}
    extra = set(d) - known
    if extra:
        raise UsageError(f"{where}unknown field(s) {', '.join(sorted(extra))}")
    fp = _int(d, "footprint_blocks" if "footprint_blocks" in d else "footprint", where=where)
    if "predicate" in d:
        m = _PRED.match(str(d["predicate"]))
        if not m:
            raise UsageError(f"{where}bad predicate {d['predicate']!r} (leading_prefix_at_least(k)"
                             f" or contiguous_range(start, k))")
        if m.group(1) == "leading_prefix_at_least":
            if m.group(3) is not None:
                raise UsageError(f"{where}leading_prefix_at_least takes one argument")
            start, k = 0, int(m.group(2))
        else:
            if m.group(3) is None:
                raise UsageError(f"{where}contiguous_range takes two arguments")
            start, k = int(m.group(2)), int(m.group(3))
    else:
        start = _int(d, "pred_start", 0, where)
        k = _int(d, "pred_len", fp, where)
    mode = _mode(d.get("protection_mode", d.get("mode", "hard_protected")), where)
    return ClaimConfig(footprint=fp, pred_start=start, pred_len=k, mode=mode,
                       owner=_int(d, "owner", 0, where), identity=_int(d, "identity", 0, where),
                       duration=_int(d, "duration", 0, where))


def request_from_dict(d: Dict[str, Any], j: int) -> RequestConfig:
    where = f"request {j}: "
    if not isinstance(d, dict):
        raise UsageError(f"{where}must be a table/object")
    extra = set(d) - {"need", "identity"}
    if extra:
        raise UsageError(f"{where}unknown field(s) {', '.join(sorted(extra))}")
    return RequestConfig(need=_int(d, "need", where=where),
                         identity=_int(d, "identity", 0, where))


def config_from_dict(d: Dict[str, Any]) -> Config:
    if not isinstance(d, dict):
        raise UsageError("configuration must be a table/object")
    usable = _int(d, "usable")
    headroom = _int(d, "headroom", default_headroom(usable))
    cfg = Config(usable=usable, cap=_int(d, "cap", default_cap(usable, headroom)),
                 claims=tuple(claim_from_dict(c, i) for i, c in enumerate(d.get("claims", []))),
                 requests=tuple(request_from_dict(r, j)
                                for j, r in enumerate(d.get("requests", []))),
                 headroom=headroom,
                 response_ticks=_int(d, "response_ticks", DEFAULT_RESPONSE_TICKS))
    validate(cfg)
    return cfg


def config_to_dict(cfg: Config) -> Dict[str, Any]:
    return {"usable": cfg.usable, "cap": cfg.cap, "headroom": cfg.headroom,
            "response_ticks": cfg.response_ticks,
            "claims": [{"footprint": c.footprint, "pred_start": c.pred_start,
                        "pred_len": c.pred_len, "mode": Mode(c.mode).name.lower(),
                        "owner": c.owner, "identity": c.identity, "duration": c.duration}
                       for c in cfg.claims],
            "requests": [{"need": r.need, "identity": r.identity} for r in cfg.requests]}


def validate(cfg: Config) -> None:
    """The spec's well-formedness conditions, and a claim must fit in the pool."""
    for ok, msg in config_errors(CONCRETE, cfg):
        if not ok:
            raise UsageError(f"impossible configuration: {msg}")
    for i, c in enumerate(cfg.claims):
        if c.footprint > cfg.usable:
            raise UsageError(f"impossible configuration: claim {i} needs {c.footprint} blocks, "
                             f"more than the usable pool of {cfg.usable}")


def load_config(path: str) -> Config:
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"no such configuration file: {path}")
    try:
        if p.suffix == ".toml":
            d = tomllib.loads(p.read_text())
        else:
            d = json.loads(p.read_text())
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: not valid {p.suffix.lstrip('.') or 'JSON'}: {e}")
    return config_from_dict(d.get("config", d) if isinstance(d, dict) else d)


def parse_claim_option(s: str, i: int) -> ClaimConfig:
    """FOOTPRINT[:PRED_LEN[:MODE[:DURATION]]], e.g. 3:2:hard_protected."""
    parts = s.split(":")
    try:
        fp = int(parts[0])
        k = int(parts[1]) if len(parts) > 1 and parts[1] else fp
        dur = int(parts[3]) if len(parts) > 3 else 0
    except ValueError:
        raise UsageError(f"--claim {s!r}: expected FOOTPRINT[:PRED_LEN[:MODE[:DURATION]]]")
    mode = _mode(parts[2], f"--claim {s!r}: ") if len(parts) > 2 else int(Mode.HARD_PROTECTED)
    return ClaimConfig(footprint=fp, pred_start=0, pred_len=k, mode=mode, owner=0, identity=0,
                       duration=dur)
