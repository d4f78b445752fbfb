"""Traces in the Informal Trace Format (ITF, Apalache ADR-015), read and written.

A trace is `{"#meta": ..., "params": [...], "vars": [...], "states": [...]}`.  Each state is a
record of the spec's variables: integers as JSON numbers (as `{"#bigint": "..."}` beyond 2^53),
claims and requests as sequences (JSON lists) of records, enumerations as their names, the
claims a conflict event named as ITF sets (`{"#set": [...]}`) of claim indices.  Every state
after the first is labelled, as Quint's model-based testing does, with the action that produced
it (`mbt::actionTaken`) and its arguments (`mbt::nondetPicks`, a record of Option variants:
`{"tag": "Some", "value": v}`).  The configuration and policy go in `#meta`, so one file is
enough to replay the trace through the spec.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Dict, List, Optional

from kvclaims.spec.actions import ACTIONS, Step
from kvclaims.spec.state import ClaimState, Config, RequestState, State
from kvclaims.spec.vocab import ClaimStatus, RequestStatus

from .bmc import Trace

FORMAT_DESCRIPTION = "https://apalache-mc.org/docs/adr/015adr-trace.html"
BIG = 2 ** 53
TOP = ("clock", "seq", "empty", "cached", "cross_identity_reuse")


class ItfError(ValueError):
    """A file that is not a well-formed ITF trace of this spec."""


# --- values ----------------------------------------------------------------------------------

def enc_int(v: int):
    v = int(v)
    return {"#bigint": str(v)} if abs(v) >= BIG else v


def dec_int(v, where: str) -> int:
    if isinstance(v, bool):
        raise ItfError(f"{where}: expected an integer, got a boolean")
    if isinstance(v, int):
        return v
    if isinstance(v, dict) and set(v) == {"#bigint"} and isinstance(v["#bigint"], str):
        try:
            return int(v["#bigint"])
        except ValueError:
            pass
    raise ItfError(f"{where}: expected an integer, got {json.dumps(v)[:60]}")


def dec_bool(v, where: str) -> bool:
    if not isinstance(v, bool):
        raise ItfError(f"{where}: expected a boolean, got {json.dumps(v)[:60]}")
    return v


def dec_set(v, where: str) -> list:
    if not (isinstance(v, dict) and set(v) == {"#set"} and isinstance(v["#set"], list)):
        raise ItfError(f"{where}: expected an ITF set {{\"#set\": [...]}}")
    return v["#set"]


def dec_enum(enum, v, where: str) -> int:
    if isinstance(v, str) and v in enum.__members__:
        return int(enum[v])
    raise ItfError(f"{where}: expected one of {', '.join(enum.__members__)}, got {v!r}")


def some(v):
    return {"tag": "Some", "value": v}


# --- states ----------------------------------------------------------------------------------

def _enc_record(x, enum) -> Dict[str, Any]:
    rec: Dict[str, Any] = {}
    for f in fields(x):
        v = getattr(x, f.name)
        if f.name in ("status", "last_event"):
            rec[f.name] = enum(v).name
        elif f.name in ("named", "blocking"):
            rec[f.name] = {"#set": [i for i, b in enumerate(v) if b]}
        else:
            rec[f.name] = v if isinstance(v, bool) else enc_int(v)
    return rec


def state_to_itf(s: State) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for n in TOP:
        v = getattr(s, n)
        out[n] = bool(v) if isinstance(v, bool) else enc_int(v)
    out["claims"] = [_enc_record(c, ClaimStatus) for c in s.claims]
    out["requests"] = [_enc_record(r, RequestStatus) for r in s.requests]
    return out


_BOOLS = ("victim_protected", "harm_unclaimed", "nonowner_change", "admit", "spurious",
          "misreported")


def _record(cls, enum, rec, K: int, w: str):
    """Decode one claim or request record into its dataclass."""
    if not isinstance(rec, dict):
        raise ItfError(f"{w}: expected a record")
    kw = {}
    for f in fields(cls):
        if f.name not in rec:
            raise ItfError(f"{w}: missing field {f.name}")
        v, fw = rec[f.name], f"{w}.{f.name}"
        if f.name in ("status", "last_event"):
            kw[f.name] = dec_enum(enum, v, fw)
        elif f.name in ("named", "blocking"):
            ids = {dec_int(x, fw) for x in dec_set(v, fw)}
            if not ids <= set(range(K)):
                raise ItfError(f"{fw}: claim index out of range")
            kw[f.name] = tuple(i in ids for i in range(K))
        elif f.name in _BOOLS:
            kw[f.name] = dec_bool(v, fw)
        else:
            kw[f.name] = dec_int(v, fw)
    return cls(**kw)


def state_from_itf(d, K: int, R: int, where: str) -> State:
    if not isinstance(d, dict):
        raise ItfError(f"{where}: a state must be an object")
    missing = [n for n in TOP + ("claims", "requests") if n not in d]
    if missing:
        raise ItfError(f"{where}: missing variable(s) {', '.join(missing)}")
    top = {n: (dec_bool(d[n], f"{where}.{n}") if n == "cross_identity_reuse"
               else dec_int(d[n], f"{where}.{n}")) for n in TOP}
    if not isinstance(d["claims"], list) or len(d["claims"]) != K:
        raise ItfError(f"{where}.claims: expected a list of {K} records")
    if not isinstance(d["requests"], list) or len(d["requests"]) != R:
        raise ItfError(f"{where}.requests: expected a list of {R} records")
    claims = [_record(ClaimState, ClaimStatus, c, K, f"{where}.claims[{i}]")
              for i, c in enumerate(d["claims"])]
    reqs = [_record(RequestState, RequestStatus, r, K, f"{where}.requests[{j}]")
            for j, r in enumerate(d["requests"])]
    return State(claims=tuple(claims), requests=tuple(reqs), **top)


# --- steps -----------------------------------------------------------------------------------

def _slot_names(action: str, slots) -> tuple:
    n = len(slots)
    if action in ("demote", "reuse"):
        return ("request", "claim")
    if n == 0:
        return ()
    if action in ("admit", "finish", "defer", "refuse"):
        return ("request",)
    return ("claim",)


def step_picks(step: Step) -> Dict[str, Any]:
    picks = {n: some(v) for n, v in zip(_slot_names(step.action, step.slots), step.slots)}
    for k, v in step.choices:
        picks[k] = some(v if isinstance(v, bool) else enc_int(v))
    return picks


def step_from_picks(action, picks, where: str) -> Step:
    if not isinstance(action, str) or action not in ACTIONS:
        raise ItfError(f"{where}: unknown action {action!r}")
    if not isinstance(picks, dict):
        raise ItfError(f"{where}: mbt::nondetPicks must be a record")
    vals = {}
    for k, v in picks.items():
        if not (isinstance(v, dict) and v.get("tag") in ("Some", "None") and "value" in v):
            raise ItfError(f"{where}: pick {k!r} is not an Option variant")
        if v["tag"] == "Some":
            vals[k] = v["value"]
    slots = []
    for n in ("request", "claim"):      # the order of two-slot actions (demote, reuse)
        if n in vals:
            slots.append(dec_int(vals.pop(n), f"{where}.{n}"))
    choices = []
    for k, v in vals.items():
        choices.append((k, v if isinstance(v, bool) else dec_int(v, f"{where}.{k}")))
    return Step(action, tuple(slots), tuple(choices))


# --- whole traces ----------------------------------------------------------------------------

def trace_to_itf(tr: Trace, source: str = "kvclaims", description: str = "") -> Dict[str, Any]:
    from .configio import config_to_dict
    states = []
    for n, s in enumerate(tr.states):
        st = {"#meta": {"index": n}, **state_to_itf(s)}
        if n == 0:
            st["mbt::actionTaken"] = "init"
            st["mbt::nondetPicks"] = {}
        else:
            step = tr.steps[n - 1]
            st["mbt::actionTaken"] = step.action
            st["mbt::nondetPicks"] = step_picks(step)
        states.append(st)
    return {
        "#meta": {"format": "ITF", "format-description": FORMAT_DESCRIPTION,
                  "source": source,
                  "description": description or f"{tr.policy}: shortest violation of {tr.goal}",
                  "policy": tr.policy, "goal": tr.goal, "depth": tr.depth,
                  "config": config_to_dict(tr.config)},
        "params": [],
        "vars": list(TOP) + ["claims", "requests", "mbt::actionTaken", "mbt::nondetPicks"],
        "states": states,
    }


def trace_from_itf(d, where: str = "trace") -> Trace:
    from kvclaims.cli import UsageError
    from .configio import config_from_dict
    if not isinstance(d, dict) or not isinstance(d.get("states"), list) or "vars" not in d:
        raise ItfError(f"{where}: not an ITF trace (needs 'vars' and a 'states' list)")
    meta = d.get("#meta")
    if not isinstance(meta, dict) or "config" not in meta or "policy" not in meta:
        raise ItfError(f"{where}: '#meta' must carry the policy and the configuration")
    try:
        cfg = config_from_dict(meta["config"])
    except UsageError as e:
        raise ItfError(f"{where}: #meta.config: {e}")
    if not d["states"]:
        raise ItfError(f"{where}: no states")
    states, steps = [], []
    for n, st in enumerate(d["states"]):
        w = f"{where}: states[{n}]"
        states.append(state_from_itf(st, cfg.K, cfg.R, w))
        if n > 0:
            if "mbt::actionTaken" not in st:
                raise ItfError(f"{w}: missing mbt::actionTaken")
            steps.append(step_from_picks(st["mbt::actionTaken"], st.get("mbt::nondetPicks", {}),
                                         w))
    goal = meta.get("goal", "")
    return Trace(str(meta["policy"]), str(goal), cfg, steps, states)


def write_itf(tr: Trace, path: Path, **kw) -> None:
    Path(path).write_text(json.dumps(trace_to_itf(tr, **kw), indent=1) + "\n")


def read_itf(path) -> Trace:
    p = Path(path)
    try:
        d = json.loads(p.read_text())
    except FileNotFoundError:
        raise ItfError(f"{path}: no such file")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ItfError(f"{path}: not JSON: {e}")
    return trace_from_itf(d, str(path))
