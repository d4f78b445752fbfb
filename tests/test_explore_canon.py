"""The two canonicalisations of symmetric states (least image under precomputed index maps for
small groups, the sorting search for larger ones) pick the same representative: the state
spaces they produce have the same size, depth and transitions."""
import pytest

from kvclaims.checker import explore as ex
from kvclaims.spec.policy import POLICIES
from kvclaims.spec.state import ClaimConfig, Config, RequestConfig

TWO_BY_TWO = Config(usable=3, cap=3, claims=(ClaimConfig(1, 0, 1, 0, 0, 0),) * 2,
                    requests=(RequestConfig(2),) * 2)
THREE_CLAIMS = Config(usable=3, cap=3, claims=(ClaimConfig(1, 0, 1, 0, 0, 0),) * 3,
                      requests=(RequestConfig(2),))


def _space(cfg, pol, orbit: bool, monkeypatch):
    if not orbit:
        monkeypatch.setattr(ex.Canon, "_orbit_maps", lambda self, cs: None)
    r = ex.explore(cfg, POLICIES[pol], max_clock=1, symmetry=True)
    monkeypatch.undo()
    return r.distinct, r.depth, r.transitions, sorted(r.first_violation)


@pytest.mark.parametrize("cfg,pol", [(TWO_BY_TWO, "native"), (TWO_BY_TWO, "hard_demote"),
                                     (THREE_CLAIMS, "native")])
def test_orbit_maps_and_sorting_search_agree(cfg, pol, monkeypatch):
    assert ex.Canon(ex.compile_spec(cfg, POLICIES[pol]), True)._orbit is not None
    fast = _space(cfg, pol, True, monkeypatch)
    assert fast == _space(cfg, pol, False, monkeypatch)
    assert fast[0] > 1000     # a real state space, not a trivial one
