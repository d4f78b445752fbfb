"""Reading a runtime's telemetry for `kvclaims validate`: JSON Lines, format detection, and the
project's own schema taken as the normal form every importer produces.

The normal form is the MicroRuntime's telemetry (model/telemetry.schema.json): one dict per
event with `seq` and `type` from kvclaims.spec.events.EVENT_TYPES.  An importer may add
`implied: true` to an event the foreign schema leaves implicit (a claim accepted with no
submission before it): such events let the spec's actions line up and are never counted as
evidence.  Anything wrong with the *file* (not JSON, cut mid-line, unknown schema version,
missing sequence numbers) is bad input: UsageError, exit 2, one line."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Tuple

from kvclaims.errors import UsageError
from kvclaims.model.observer import TelemetryError, json_lines
from kvclaims.model.telemetry import SCHEMA_VERSION
from kvclaims.spec.events import EVENT_TYPES

FORMATS = ("auto", "kvclaims", "artifact-v1")


@dataclass
class ImportedTrace:
    """A trace in the normal form, and what the import could not map."""
    path: str
    format: str
    source_events: int
    events: List[Dict[str, Any]]
    # (line, event name) of every event the importer does not know: reported, never dropped
    unknown: List[Tuple[int, str]] = field(default_factory=list)
    # (line, event name) of events it knows but the spec does not model (offload tier, ...)
    unmodelled: List[Tuple[int, str]] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)


def read_lines(path: str) -> List[Tuple[int, Dict[str, Any]]]:
    """(line number, event) of every non-blank line; bad input names the line."""
    try:
        out = json_lines(path)
    except TelemetryError as e:
        raise UsageError(str(e)) from None
    if not out:
        raise UsageError(f"{path}: no events")
    return out


def detect(path: str, first: Dict[str, Any]) -> str:
    v = first.get("schema_version")
    if v == SCHEMA_VERSION and "type" in first:
        return "kvclaims"
    if v == 1 and "event" in first:
        return "artifact-v1"
    raise UsageError(f"{path}: unknown schema version {v!r} (known: {SCHEMA_VERSION!r}, "
                     f"artifact schema 1)")


def import_kvclaims(path: str, lines) -> ImportedTrace:
    """The project's own schema: checked, not translated.  Sequence numbers must run 1, 2, ...
    (a gap is a truncated or reordered file: bad input, since nothing after it can be
    trusted).  A claim or request event without its id is kept: that is a contract breach
    (O6) the validator reports, not a file error."""
    events, unknown = [], []
    prev = 0
    for n, ev in lines:
        if ev.get("schema_version") != SCHEMA_VERSION:
            raise UsageError(f"{path}:{n}: unknown schema version {ev.get('schema_version')!r}")
        seq = ev.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool):
            raise UsageError(f"{path}:{n}: event without an integer 'seq'")
        if seq != prev + 1:
            what = "reordered" if seq <= prev else "truncated"
            raise UsageError(f"{path}:{n}: {what}: seq {seq} after seq {prev}")
        prev = seq
        if ev.get("type") not in EVENT_TYPES:
            unknown.append((n, str(ev.get("type"))))
            continue
        ev["line"] = n
        events.append(ev)
    return ImportedTrace(path, "kvclaims", len(lines), events, unknown)


def load_trace(path: str, fmt: str = "auto") -> ImportedTrace:
    if fmt not in FORMATS:
        raise UsageError(f"unknown format '{fmt}' (choose from {', '.join(FORMATS)})")
    lines = read_lines(path)
    found = detect(path, lines[0][1])
    if fmt != "auto" and fmt != found:
        raise UsageError(f"{path}: --format {fmt}, but the trace is {found}")
    if found == "kvclaims":
        return import_kvclaims(path, lines)
    from .import_artifact_v1 import import_artifact
    return import_artifact(path, lines)
