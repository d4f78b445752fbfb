"""Refinement of the MicroRuntime on every counterexample the checker finds (bad policies and
seeded mutations): every step of the runtime is a step of the spec, and the runtime breaks the
obligation where the spec's trace does, except where its own (allowed) choice of victims or
names differs from the solver's, which is pinned here too."""
from __future__ import annotations

import pytest

from kvclaims.checker.bmc import bmc
from kvclaims.refinement.check import check_refinement
from kvclaims.refinement.model_target import ModelTarget
from kvclaims.spec.policy import MUTATIONS, POLICIES

# (policy or mutation, obligation, trace depth, what the runtime breaks first: (step, ids))
CASES = [
    ("native", "O3", 4, (4, ("O3", "O5", "O6"))),
    ("soft_priority", "O7", 2, (2, ("O7",))),
    ("write_no_admit", "O2", 4, (4, ("O2", "O3"))),
    # the solver evicts the tail of a contiguous_range(1, 1) claim; a block-counting runtime
    # gives up the head first, so the predicate survives: O3 only
    ("block_count", "O5", 4, (4, ("O3",))),
    ("late_release", "O4", 4, (4, ("O4",))),
    # the solver names claims nobody submitted; this runtime's misattribution (every claim
    # on record) names none when none is on record
    ("misattribute", "O8", 1, None),
    ("drop_protection_guard", "O3", 4, (4, ("O3",))),
    ("demotion_after_loss", "O4", 4, (4, ("O4",))),
    ("forget_blocking_claim", "O8", 4, (4, ("O8",))),
    ("skip_expiry_check", "O3", 5, (5, ("O3",))),
    ("count_blocks", "O5", 4, (4, ("O3",))),
    ("skip_owner_check", "O10", 3, (3, ("O10",))),
]


@pytest.mark.parametrize("name,ob,depth,first", CASES)
def test_model_refines_counterexample(name, ob, depth, first):
    pol = POLICIES.get(name) or MUTATIONS[name]
    tr = bmc(pol, [ob], max_depth=depth + 1).found[ob]
    assert tr.depth == depth
    rep = check_refinement(ModelTarget(), tr.config, pol, tr.steps)
    assert rep.ok, rep.divergence.describe() if rep.divergence else rep.initial_diff
    assert rep.declined == []
    assert rep.first_broken() == first
