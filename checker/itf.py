"""Traces in the Informal Trace Format (ITF, Apalache ADR-015), read and written.

A trace is `{"#meta": ..., "params": [...], "vars": [...], "states": [...]}`.  Each state is a
record of the spec's variables: integers as JSON numbers (as `{"#bigint": "..."}` beyond 2^53),
claims and requests as sequences (JSON lists) of records, enumerations as their names, the
claims a conflict event named as ITF sets (`{"#set": [...]}`) of claim indices.  Every state
after the first is labelled, as Quint's model-based testing does, with the action that produced
it (`mbt::actionTaken`) and its arguments (`mbt::nondetPicks`, a record with the same
identifier keys in every state: see "steps" below).  The configuration and policy go in
`#meta`, so one file is enough to replay the trace through the spec.  Files written here are
read by itf-py (the Python ITF library) and files itf-py writes are read here
(tests/test_itf_interop.py).
"""
from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path
from typing import Any, Dict, List

from kvclaims.errors import UsageError, shown
from kvclaims.inputs import load_json
from kvclaims.limits import MAX_INT_DIGITS, MAX_TRACE_STATES
from kvclaims.outputs import write_atomic
from kvclaims.spec.actions import ACTIONS, Step
from kvclaims.spec.obligations import OBLIGATIONS
from kvclaims.spec.policy import Policy
from kvclaims.spec.state import ClaimState, Config, RequestState, State
from kvclaims.spec.vocab import ClaimStatus, RequestStatus

from .bmc import Trace
from .steps import check_action, check_step, choice_sorts, slot_names

FORMAT_DESCRIPTION = "https://apalache-mc.org/docs/adr/015adr-trace.html"
BIG = 2 ** 53
TOP = ("clock", "seq", "empty", "cached", "cross_identity_reuse")


class ItfError(UsageError, ValueError):
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
    if isinstance(v, dict) and set(v) == {"#bigint"} and isinstance(v["#bigint"], str) \
            and len(v["#bigint"].lstrip("-")) <= MAX_INT_DIGITS:
        try:
            return int(v["#bigint"])
        except ValueError:
            pass
    raise ItfError(f"{where}: expected an integer, got {shown(v)}")


def dec_bool(v, where: str) -> bool:
    if not isinstance(v, bool):
        raise ItfError(f"{where}: expected a boolean, got {shown(v)}")
    return v


def dec_set(v, where: str) -> list:
    if not (isinstance(v, dict) and set(v) == {"#set"} and isinstance(v["#set"], list)):
        raise ItfError(f"{where}: expected an ITF set {{\"#set\": [...]}}")
    return v["#set"]


def dec_enum(enum, v, where: str) -> int:
    if isinstance(v, str) and v in enum.__members__:
        return int(enum[v])
    raise ItfError(f"{where}: expected one of {', '.join(enum.__members__)}, got {shown(v)}")


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


# --- steps ---------------------------------------------------------------------------------
# Pick names are identifiers (itf-py and Quint turn a record's keys into field names): the
# spec's choice `take[0]` is written `take_0`.  Every state of a trace carries the same keys,
# every pick the configuration and policy can make; a pick the step does not make is an empty
# sequence and one it makes a sequence of one value.  (Quint's Option variants would be the
# other convention, but itf-py turns a variant's tag into a Python type name and cannot read
# the tag None; the reader below accepts both.)

_INDEXED = re.compile(r"^([a-z_]+)\[(\d+)\]$")
_FLAT = re.compile(r"^([a-z_]+?)_(\d+)$")


def pick_name(choice: str) -> str:
    m = _INDEXED.match(choice)
    return f"{m.group(1)}_{m.group(2)}" if m else choice


def pick_keys(cfg: Config, pol: Policy) -> List[str]:
    """The fixed key set of a trace's mbt::nondetPicks: slots, then every choice."""
    keys = ["request", "claim"]
    for kind in ACTIONS.values():
        for c in kind.choices(cfg, pol):
            if pick_name(c.name) not in keys:
                keys.append(pick_name(c.name))
    return keys


def _choice_name(key: str, sorts: Dict[str, str]) -> str:
    """The spec's choice name for a pick key (either spelling)."""
    if key in sorts:
        return key
    m = _FLAT.match(key)
    if m and f"{m.group(1)}[{m.group(2)}]" in sorts:
        return f"{m.group(1)}[{m.group(2)}]"
    return key


def step_picks(step: Step, keys: List[str]) -> Dict[str, Any]:
    picks: Dict[str, Any] = {k: [] for k in keys}
    for n, v in zip(slot_names(step.action), step.slots):
        picks[n] = [enc_int(v)]
    for k, v in step.choices:
        picks[pick_name(k)] = [v if isinstance(v, bool) else enc_int(v)]
    return picks


def _pick_value(v, where: str):
    """(made, value) of one pick: a sequence of at most one value, or an Option variant."""
    if isinstance(v, list) and len(v) <= 1:
        return (True, v[0]) if v else (False, None)
    if isinstance(v, dict) and set(v) == {"tag", "value"} and v["tag"] in ("Some", "None"):
        return (v["tag"] == "Some", v["value"])
    raise ItfError(f"{where}: expected [] or [value] (or an Option variant), got "
                   f"{shown(v)}")


def step_from_picks(cfg: Config, pol: Policy, action, picks, where: str) -> Step:
    check_action(action, where)
    if not isinstance(picks, dict):
        raise ItfError(f"{where}: mbt::nondetPicks must be a record")
    sorts = choice_sorts(cfg, pol, action)
    made = {}
    for k, v in picks.items():
        ok, value = _pick_value(v, f"{where}.mbt::nondetPicks.{k}")
        if ok:
            made[k] = value
    slots = []
    for n in slot_names(action):      # Step.slots order (demote, reuse: request, claim)
        if n not in made:
            raise ItfError(f"{where}: action '{action}' needs the pick '{n}'")
        slots.append(dec_int(made.pop(n), f"{where}.{n}"))
    choices = []
    for k, v in made.items():
        name = _choice_name(k, sorts)
        choices.append((name, v if isinstance(v, bool) else dec_int(v, f"{where}.{k}")))
    return check_step(cfg, pol, Step(action, tuple(slots), tuple(choices)), where)


# --- whole traces ----------------------------------------------------------------------------

def trace_to_itf(tr: Trace, source: str = "kvclaims", description: str = "") -> Dict[str, Any]:
    from .configio import config_to_dict, resolve_policy
    keys = pick_keys(tr.config, resolve_policy(tr.policy))
    states = []
    for n, s in enumerate(tr.states):
        st = {"#meta": {"index": n}, **state_to_itf(s)}
        st["mbt::actionTaken"] = "init" if n == 0 else tr.steps[n - 1].action
        st["mbt::nondetPicks"] = ({k: [] for k in keys} if n == 0
                                  else step_picks(tr.steps[n - 1], keys))
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


def _meta(d, where: str):
    """(policy, goal, config) from #meta, each checked."""
    from .configio import config_from_dict, resolve_policy
    meta = d.get("#meta")
    if not isinstance(meta, dict) or "config" not in meta or "policy" not in meta:
        raise ItfError(f"{where}: '#meta' must carry the policy and the configuration")
    try:
        pol = resolve_policy(meta["policy"])
    except UsageError as e:
        raise ItfError(f"{where}: #meta.policy: {e}") from None
    goal = meta.get("goal", "")
    if goal not in ("", None) and not (isinstance(goal, str) and goal in OBLIGATIONS):
        raise ItfError(f"{where}: #meta.goal: unknown obligation {shown(goal)} (choose from "
                       f"{', '.join(OBLIGATIONS)})")
    try:
        cfg = config_from_dict(meta["config"])
    except UsageError as e:
        raise ItfError(f"{where}: #meta.config: {e}") from None
    return meta["policy"], pol, goal or "", cfg


def trace_from_itf(d, where: str = "trace") -> Trace:
    """The trace in an ITF document; ItfError (a UsageError) names the field otherwise."""
    try:
        return _trace_from_itf(d, where)
    except ItfError:
        raise
    except UsageError as e:     # from the shared codecs: same message, this module's type
        raise ItfError(str(e)) from None


def _trace_from_itf(d, where: str) -> Trace:
    if not isinstance(d, dict) or not isinstance(d.get("states"), list) or "vars" not in d:
        raise ItfError(f"{where}: not an ITF trace (needs 'vars' and a 'states' list)")
    name, pol, goal, cfg = _meta(d, where)
    if not d["states"]:
        raise ItfError(f"{where}: no states")
    if len(d["states"]) > MAX_TRACE_STATES:
        raise ItfError(f"{where}: {len(d['states'])} states, more than the limit of "
                       f"{MAX_TRACE_STATES}")
    states, steps = [], []
    for n, st in enumerate(d["states"]):
        w = f"{where}: states[{n}]"
        states.append(state_from_itf(st, cfg.K, cfg.R, w))
        if n > 0:
            if "mbt::actionTaken" not in st:
                raise ItfError(f"{w}: missing mbt::actionTaken")
            steps.append(step_from_picks(cfg, pol, st["mbt::actionTaken"],
                                         st.get("mbt::nondetPicks", {}), w))
    return Trace(name, goal, cfg, steps, states)


def write_itf(tr: Trace, path: Path, **kw) -> None:
    write_atomic(path, json.dumps(trace_to_itf(tr, **kw), indent=1) + "\n")


def read_itf(path) -> Trace:
    try:
        d = load_json(path)
    except UsageError as e:
        raise ItfError(str(e)) from None
    return trace_from_itf(d, str(path))
