"""The one interface every refinement target implements (the spec itself, the MicroRuntime,
vLLM core, the live vLLM engine, patched vLLM): apply an abstract action, observe the abstract
state, collect events.

A target resolves the nondeterminism the spec leaves open (which blocks are victims, ...) by
itself; `apply` reports the choices it made, so the harness can ask the spec whether they were
allowed and compute the spec's successor with exactly those choices."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Protocol, Tuple

from kvclaims.spec.actions import Step
from kvclaims.spec.policy import Policy
from kvclaims.spec.state import Config


@dataclass
class Applied:
    """What a target did with a step: whether it could take it at all, and the choices it
    made (same names as the spec's Choice names, e.g. "take[0]", "head[0]", "admit")."""
    taken: bool
    choices: Tuple[Tuple[str, Any], ...] = ()
    note: str = ""


class Target(Protocol):
    name: str

    def reset(self, cfg: Config, policy: Policy) -> None: ...

    def apply(self, step: Step) -> Applied: ...

    def view(self) -> Dict[str, Any]:
        """The abstract state, shaped as kvclaims.spec.view.refinement_view."""
        ...

    def events(self) -> List[Dict[str, Any]]:
        """Telemetry events emitted so far (dicts with at least "seq" and "type")."""
        ...
