"""What a runtime must agree with the spec on, step by step (refinement): the pool and the
recorded lifecycle, not the spec's ghost bookkeeping (sequence numbers, observer copies), which
a runtime reproduces through its telemetry instead."""
from __future__ import annotations

from typing import Any, Dict

from .state import State


def refinement_view(s: State) -> Dict[str, Any]:
    out: Dict[str, Any] = {"clock": s.clock, "empty": s.empty, "cached": s.cached}
    for i, c in enumerate(s.claims):
        out[f"claims[{i}].lo"] = c.lo
        out[f"claims[{i}].hi"] = c.hi
        out[f"claims[{i}].status"] = c.status
    for j, r in enumerate(s.requests):
        out[f"requests[{j}].status"] = r.status
        out[f"requests[{j}].live"] = r.live
        out[f"requests[{j}].admit"] = r.admit
        out[f"requests[{j}].named"] = tuple(r.named)
    return out


def view_diff(expected: Dict[str, Any], observed: Dict[str, Any]):
    """Field-by-field differences, as (field, expected, observed)."""
    return [(k, expected.get(k), observed.get(k)) for k in sorted(set(expected) | set(observed))
            if expected.get(k) != observed.get(k)]
