"""Refinement of the MicroRuntime on every litmus trace (issue 4, item 6a) and the litmus suite
on target "model" with the spec's expectations (item 7)."""
from __future__ import annotations

import pytest

from kvclaims.checker.configio import resolve_policy
from kvclaims.checker.litmus import load_suite
from kvclaims.cli import main
from kvclaims.model.observer import reconstruct
from kvclaims.refinement.check import check_refinement
from kvclaims.refinement.model_target import ModelTarget

CASES = [(sc, v, p) for sc in load_suite() for v, pols in sc.expect.items() for p in pols]


@pytest.mark.parametrize("sc,variant,policy", CASES,
                         ids=[f"{sc.id}-{v}-{p}" for sc, v, p in CASES])
def test_model_refines_litmus_trace(sc, variant, policy):
    pol = resolve_policy(policy)
    t = ModelTarget()
    rep = check_refinement(t, sc.variants[variant], pol, sc.steps)
    assert rep.ok, rep.divergence.describe() if rep.divergence else rep.initial_diff
    exp = sc.expect[variant][policy].get("broken_obligations")
    if exp is not None:
        assert list(rep.broken_at_end()) == exp
    # the observer, from the raw telemetry alone, sees a breach exactly when one happened
    rec = reconstruct(t.rt.telemetry.events)
    assert [f for f in rec.findings if f.kind in ("truncated", "reordered", "lifecycle")] == []
    breach = {"protected_victim", "unreported_loss", "release_after_loss", "misattribution",
              "live_underreported"}
    if exp == []:
        assert not [f for f in rec.findings if f.kind in breach]


def test_cli_litmus_on_the_model(capsys):
    assert main(["litmus", "--target", "model"]) == 0
    assert capsys.readouterr().out.rstrip().endswith(
        f"{len(CASES)}/{len(CASES)} litmus cases pass on target model")
