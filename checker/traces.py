"""Where counterexample traces go: out/<policy>/<obligation>/."""
from __future__ import annotations

import json
from pathlib import Path

from .bmc import Trace


def save_counterexample(trace: Trace, out_dir: Path) -> str:
    """Write `trace` under out_dir/<policy>/<obligation>/ and return the path written."""
    d = Path(out_dir) / trace.policy.replace("/", "__") / trace.goal
    d.mkdir(parents=True, exist_ok=True)
    p = d / "trace.json"
    p.write_text(json.dumps({
        "policy": trace.policy, "obligation": trace.goal, "depth": trace.depth,
        "steps": [{"action": s.action, "slots": list(s.slots), "choices": dict(s.choices)}
                  for s in trace.steps],
    }, indent=1))
    return str(p)
