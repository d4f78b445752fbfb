"""ITF interoperability with itf-py, the Python ITF library (issue 10): every counterexample
trace the project writes is read by itf-py (identifier pick names, the same pick keys in every
state), and a trace itf-py writes back is read by the project into the same steps and states."""
from __future__ import annotations

import json

import pytest

from kvclaims.checker.bmc import bmc
from kvclaims.checker.explore import explore
from kvclaims.checker.itf import read_itf, trace_from_itf, trace_to_itf
from kvclaims.checker.traces import save_counterexample
from kvclaims.spec.policy import MUTATIONS, POLICIES
from kvclaims.spec.state import ClaimConfig, Config, RequestConfig

itf_py = pytest.importorskip("itf_py")

ONE = Config(usable=4, cap=3, claims=(ClaimConfig(3, 0, 2, 0, 0, 0),),
             requests=(RequestConfig(3),))


def _traces():
    for name, pol in {**POLICIES, **MUTATIONS}.items():
        yield from explore(ONE, pol, max_clock=2).traces.values()
    # the checker's own kind: a BMC counterexample with solver-chosen sizes
    yield bmc(POLICIES["misattribute"], ["O8"], max_depth=2).found["O8"]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    return [save_counterexample(tr, out) for tr in _traces()]


def test_itf_py_reads_every_counterexample(written):
    assert len(written) >= 10
    for path in written:
        with open(path) as f:
            tr = itf_py.trace_from_json(json.load(f))
        keys = {tuple(s.values["mbt::nondetPicks"]._fields) for s in tr.states}
        assert len(keys) == 1, f"{path}: pick keys change between states"
        assert tr.states[0].values["mbt::actionTaken"] == "init"
        assert all(s.values["claims"] for s in tr.states)


def test_project_reads_what_itf_py_writes(written, tmp_path):
    for n, path in enumerate(written):
        with open(path) as f:
            ours = read_itf(path)
            theirs = itf_py.trace_to_json(itf_py.trace_from_json(json.load(f)))
        p = tmp_path / f"{n}.itf.json"
        p.write_text(json.dumps(theirs))
        back = read_itf(p)
        assert (back.policy, back.goal, back.config) == (ours.policy, ours.goal, ours.config)
        assert back.steps == ours.steps and back.states == ours.states


def test_quint_option_picks_are_read_too():
    """Quint writes picks as Option variants ({"tag": "Some"/"None", ...}); read the same."""
    tr = explore(ONE, POLICIES["native"], max_clock=2).traces["O3"]
    d = trace_to_itf(tr)
    for s in d["states"]:
        s["mbt::nondetPicks"] = {k: ({"tag": "Some", "value": v[0]} if v else
                                     {"tag": "None", "value": {"#tup": []}})
                                 for k, v in s["mbt::nondetPicks"].items()}
    back = trace_from_itf(d)
    assert back.steps == tr.steps and back.states == tr.states
