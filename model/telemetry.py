"""Claim-level telemetry (docs/CONTRACT.md section 7): JSON Lines events with a schema version, a
monotonic sequence number, a timestamp and a run id, kept in memory and/or written to a file.
Event `type` names are the spec's (kvclaims.spec.events.EVENT_TYPES).  The JSON Schema the
events satisfy is model/telemetry.schema.json."""
from __future__ import annotations

import json
import time
import uuid
from functools import lru_cache
from pathlib import Path
from collections import deque
from typing import Any, Deque, Dict, IO, Iterable, List, Optional, Union

from kvclaims.spec.events import EVENT_TYPES

SCHEMA_VERSION = "kvclaims.telemetry/1"
SCHEMA_PATH = Path(__file__).with_name("telemetry.schema.json")


class Telemetry:
    """Event sink.  `keep`: hold events in memory (`events`): True keeps them all (tests,
    refinement), an integer n only the last n (a server's bounded ring); `path`/`stream`:
    append each event as one JSON line.  With neither, events are built and dropped."""

    def __init__(self, run_id: Optional[str] = None, path: Optional[str] = None,
                 stream: Optional[IO[str]] = None, keep: Union[bool, int] = True,
                 clock=time.time):
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.seq = 0
        self.keep = bool(keep)
        self.events: Union[List[Dict[str, Any]], Deque[Dict[str, Any]]] = (
            deque(maxlen=keep) if keep is not True and keep else [])
        self._clock = clock
        # line-buffered: a server killed at shutdown loses no whole event
        self._own = open(path, "a", encoding="utf-8", buffering=1) if path else None
        self._stream = self._own or stream
        self.closed = False

    def emit(self, type_: str, **fields: Any) -> Dict[str, Any]:
        if type_ not in EVENT_TYPES:
            raise ValueError(f"unknown event type {type_!r}")
        self.seq += 1
        ev = {"schema_version": SCHEMA_VERSION, "seq": self.seq, "ts": self._clock(),
              "run_id": self.run_id, "type": type_}
        ev.update(fields)
        if self.keep:
            self.events.append(ev)
        if self._stream is not None:
            self._stream.write(json.dumps(ev, separators=(",", ":")) + "\n")
        return ev

    def flush(self) -> None:
        if self._stream is not None:
            self._stream.flush()

    def close_run(self, **fields: Any) -> Optional[Dict[str, Any]]:
        """Emit the run-closing event (once): an observer reports a trace without it as
        incomplete, so a trace cut at the tail can never pass as a whole run."""
        if self.closed:
            return None
        self.closed = True
        return self.emit("run_closed", **fields)

    def close(self) -> None:
        if self._own is not None:
            self._own.close()
            self._own = None
            self._stream = None


@lru_cache(maxsize=1)
def schema() -> Dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def _validator():
    import jsonschema
    cls = jsonschema.validators.validator_for(schema())
    cls.check_schema(schema())
    return cls(schema())


def schema_errors(event: Dict[str, Any]) -> List[str]:
    """Messages for every way `event` breaks the schema (empty: it validates)."""
    return [f"{'/'.join(map(str, e.absolute_path)) or '<event>'}: {e.message}"
            for e in sorted(_validator().iter_errors(event), key=lambda e: list(e.path))]


def dump_jsonl(events: Iterable[Dict[str, Any]], path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for ev in events:
            f.write(json.dumps(ev, separators=(",", ":")) + "\n")
