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
    made (same names as the spec's Choice names, e.g. "take[0]", "head[0]", "admit").

    ``decided``: decisions the target made on its own while applying the step (a runtime
    with its own scheduler defers, refuses, demotes or admits when it steps), as spec steps
    with their choices, in the order they happened. When the requested step is itself one
    of them (same action and slots) it is listed there, in its place, and ``taken`` is
    true; a requested step taken but not listed is applied after them. Targets that decide
    nothing on their own leave it empty (one spec step per target step)."""
    taken: bool
    choices: Tuple[Tuple[str, Any], ...] = ()
    note: str = ""
    decided: Tuple[Step, ...] = ()


def spec_steps(step: Step, app: Applied) -> List[Step]:
    """The spec steps a target took for one requested step, in order: its own decisions,
    then the requested step (with the target's choices) if it took it and did not list it
    among its decisions."""
    out = list(app.decided)
    if app.taken and not any(d.action == step.action and d.slots == step.slots
                             for d in app.decided):
        merged = dict(step.choices)
        merged.update(dict(app.choices))
        out.append(Step(step.action, step.slots, tuple(sorted(merged.items()))))
    return out


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
