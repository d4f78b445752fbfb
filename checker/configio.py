"""The one configuration codec: bounded configurations as users and the tools write them
(explore options, --config TOML/JSON files, litmus variants, the `config` of plain JSON
traces and of ITF `#meta`), validated with the spec's own well-formedness conditions and the
stated limits of kvclaims.limits, and policy names resolved.  Bad input raises UsageError with
one clear line naming the field."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List

from kvclaims.errors import UsageError, shown
from kvclaims.inputs import load_json, load_toml
from kvclaims.limits import MAX_BLOCKS, MAX_DURATION, MAX_LABEL, MAX_SLOTS
from kvclaims.spec.algebra import CONCRETE
from kvclaims.spec.obligations import config_errors
from kvclaims.spec.policy import MUTATIONS, POLICIES, Policy
from kvclaims.spec.state import (DEFAULT_RESPONSE_TICKS, ClaimConfig, Config, RequestConfig,
                                 default_cap, headroom_given)
from kvclaims.spec.vocab import Mode

MODES = {m.name.lower(): int(m) for m in Mode}


def resolve_policy(name: str) -> Policy:
    """A policy by name: a named policy, a mutation key, or a mutation's full name."""
    if isinstance(name, str):
        if name in POLICIES:
            return POLICIES[name]
        if name in MUTATIONS:
            return MUTATIONS[name]
        for p in MUTATIONS.values():
            if p.name == name:
                return p
    raise UsageError(f"unknown policy {str(name)[:60]!r} (choose from {', '.join(POLICIES)} or "
                     f"a mutation: {', '.join(MUTATIONS)})")


def policies(names: List[str]) -> List[Policy]:
    if not names or names == ["all"]:
        return list(POLICIES.values())
    return [resolve_policy(n) for n in names]


_PRED = re.compile(r"^\s*(leading_prefix_at_least|contiguous_range)\s*\(\s*(\d{1,20})\s*"
                   r"(?:,\s*(\d{1,20})\s*)?\)\s*$")

# field -> (largest value, what it counts); the smallest is 0, config_errors says the rest
BOUNDS = {"usable": MAX_BLOCKS, "cap": MAX_BLOCKS, "footprint": MAX_BLOCKS,
          "footprint_blocks": MAX_BLOCKS, "pred_start": MAX_BLOCKS, "pred_len": MAX_BLOCKS,
          "need": MAX_BLOCKS, "owner": MAX_LABEL, "identity": MAX_LABEL,
          "duration": MAX_DURATION, "mode": max(Mode), "headroom": MAX_BLOCKS,
          "response_ticks": MAX_DURATION}


def _int(d: Dict[str, Any], key: str, default=None, where="") -> int:
    v = d.get(key, default)
    if v is None:
        raise UsageError(f"{where}missing '{key}'")
    if isinstance(v, bool) or not isinstance(v, int):
        raise UsageError(f"{where}'{key}' must be an integer, got {shown(v)}")
    if not 0 <= v <= BOUNDS[key]:
        raise UsageError(f"{where}'{key}' = {shown(v)} is out of range 0..{BOUNDS[key]}")
    return v



def _mode(v, where) -> int:
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= max(Mode):
        return v
    if isinstance(v, str) and v.lower() in MODES:
        return MODES[v.lower()]
    raise UsageError(f"{where}unknown protection mode {shown(v)} (choose from {', '.join(MODES)})")


def _records(d: Dict[str, Any], key: str) -> list:
    v = d.get(key, [])
    if not isinstance(v, list):
        raise UsageError(f"'{key}' must be a list, got {shown(v)}")
    if len(v) > MAX_SLOTS:
        raise UsageError(f"'{key}': {len(v)} entries, more than the limit of {MAX_SLOTS}")
    return v


def _fields(d, known, where) -> None:
    if not isinstance(d, dict):
        raise UsageError(f"{where}must be a table/object, got {shown(d)}")
    extra = set(d) - set(known)
    if extra:
        raise UsageError(f"{where}unknown field(s) {', '.join(sorted(map(str, extra)))}")


CLAIM_FIELDS = ("footprint", "footprint_blocks", "predicate", "pred_start", "pred_len", "mode",
                "protection_mode", "owner", "identity", "duration")


def claim_from_dict(d: Dict[str, Any], i: int) -> ClaimConfig:
    where = f"claim {i}: "
    _fields(d, CLAIM_FIELDS, where)
    fp = _int(d, "footprint_blocks" if "footprint_blocks" in d else "footprint", where=where)
    if "predicate" in d:
        m = _PRED.match(d["predicate"]) if isinstance(d["predicate"], str) else None
        if not m:
            raise UsageError(f"{where}bad predicate {shown(d['predicate'])} "
                             f"(leading_prefix_at_least(k) or contiguous_range(start, k))")
        if m.group(1) == "leading_prefix_at_least":
            if m.group(3) is not None:
                raise UsageError(f"{where}leading_prefix_at_least takes one argument")
            pred = {"pred_start": 0, "pred_len": int(m.group(2))}
        else:
            if m.group(3) is None:
                raise UsageError(f"{where}contiguous_range takes two arguments")
            pred = {"pred_start": int(m.group(2)), "pred_len": int(m.group(3))}
        start, k = _int(pred, "pred_start", where=where), _int(pred, "pred_len", where=where)
    else:
        start = _int(d, "pred_start", 0, where)
        k = _int(d, "pred_len", fp, where)
    mode = _mode(d.get("protection_mode", d.get("mode", "hard_protected")), where)
    return ClaimConfig(footprint=fp, pred_start=start, pred_len=k, mode=mode,
                       owner=_int(d, "owner", 0, where), identity=_int(d, "identity", 0, where),
                       duration=_int(d, "duration", 0, where))


def request_from_dict(d: Dict[str, Any], j: int) -> RequestConfig:
    where = f"request {j}: "
    _fields(d, ("need", "identity"), where)
    return RequestConfig(need=_int(d, "need", where=where),
                         identity=_int(d, "identity", 0, where))


def config_from_dict(d: Dict[str, Any]) -> Config:
    _fields(d, ("usable", "cap", "headroom", "response_ticks", "claims", "requests"),
            "configuration ")
    usable = _int(d, "usable")
    stated_cap = None if d.get("cap") is None else _int(d, "cap")
    headroom = _int(d, "headroom", headroom_given(usable, stated_cap, None))
    cfg = Config(usable=usable, cap=_int(d, "cap", default_cap(usable, headroom)),
                 claims=tuple(claim_from_dict(c, i) for i, c in enumerate(_records(d, "claims"))),
                 requests=tuple(request_from_dict(r, j)
                                for j, r in enumerate(_records(d, "requests"))),
                 headroom=headroom,
                 response_ticks=_int(d, "response_ticks", DEFAULT_RESPONSE_TICKS))
    validate(cfg)
    return cfg


def config_to_dict(cfg: Config) -> Dict[str, Any]:
    """The inverse of config_from_dict (every format writes this form)."""
    return {"usable": cfg.usable, "cap": cfg.cap, "headroom": cfg.headroom,
            "response_ticks": cfg.response_ticks,
            "claims": [{"footprint": c.footprint, "pred_start": c.pred_start,
                        "pred_len": c.pred_len, "mode": Mode(c.mode).name.lower(),
                        "owner": c.owner, "identity": c.identity, "duration": c.duration}
                       for c in cfg.claims],
            "requests": [{"need": r.need, "identity": r.identity} for r in cfg.requests]}


def validate(cfg: Config) -> None:
    """The spec's well-formedness conditions, the stated limits, and a claim must fit in the
    pool."""
    if len(cfg.claims) > MAX_SLOTS or len(cfg.requests) > MAX_SLOTS:
        raise UsageError(f"at most {MAX_SLOTS} claims and {MAX_SLOTS} requests")
    for name, v in (("usable", cfg.usable), ("cap", cfg.cap)):
        if v > MAX_BLOCKS:
            raise UsageError(f"'{name}' = {v} is more than the limit of {MAX_BLOCKS} blocks")
    for j, r in enumerate(cfg.requests):
        if r.need > MAX_BLOCKS:
            raise UsageError(f"request {j}: 'need' = {r.need} is more than the limit of "
                             f"{MAX_BLOCKS} blocks")
    for ok, msg in config_errors(CONCRETE, cfg):
        if not ok:
            raise UsageError(f"impossible configuration: {msg}")
    for i, c in enumerate(cfg.claims):
        if c.footprint > cfg.usable:
            raise UsageError(f"impossible configuration: claim {i} needs {c.footprint} blocks, "
                             f"more than the usable pool of {cfg.usable}")


def load_config(path: str) -> Config:
    d = load_toml(path) if Path(path).suffix == ".toml" else load_json(path)
    try:
        return config_from_dict(d.get("config", d) if isinstance(d, dict) else d)
    except UsageError as e:
        raise UsageError(f"{path}: {e}") from None


def parse_claim_option(s: str) -> Dict[str, Any]:
    """FOOTPRINT[:PRED_LEN[:MODE[:DURATION]]], e.g. 3:2:hard_protected, as the codec's claim
    table (config_from_dict checks it with the rest)."""
    parts = s.split(":")
    where = f"--claim {shown(s)}: "
    if len(parts) > 4 or not all(p.isascii() and p.isdigit() and len(p) <= 20
                                 for n, p in enumerate(parts) if n != 2 and p):
        raise UsageError(f"{where}expected FOOTPRINT[:PRED_LEN[:MODE[:DURATION]]]")
    d: Dict[str, Any] = {"footprint": int(parts[0]) if parts[0] else None}
    if len(parts) > 1 and parts[1]:
        d["pred_len"] = int(parts[1])
    if len(parts) > 2:
        d["mode"] = parts[2]
    if len(parts) > 3 and parts[3]:
        d["duration"] = int(parts[3])
    return d
