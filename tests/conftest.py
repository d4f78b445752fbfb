import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=200, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))

VLLM_DIR = Path(__file__).parent / "vllm"


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true",
                     help="also run the tests marked slow (the long fuzz campaigns)")


def pytest_collection_modifyitems(config, items):
    """Every test under tests/vllm is marked `vllm` (so `pytest -m "not vllm"` runs without
    vLLM installed); `slow` tests run only with --slow, whatever -m says."""
    skip_slow = pytest.mark.skip(reason="slow: run with --slow")
    for item in items:
        if VLLM_DIR in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.vllm)
        if "slow" in item.keywords and not config.getoption("--slow"):
            item.add_marker(skip_slow)
