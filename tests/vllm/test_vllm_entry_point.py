"""The ``vllm.general_plugins`` entry point declared in pyproject.toml, as vLLM finds and runs
it: registered by the editable install, loadable, and run by vLLM's own plugin loader in a
fresh process (as in each process of a multi-process engine), where it declares block
size 16 on the CPU attention backend only when ``KVCLAIMS_CPU_BLOCK_16=1``."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points

TARGET = "kvclaims.refinement.vllm_plugin:register"


def test_entry_point_is_registered_and_loads(vllm_layer):
    from vllm.plugins import DEFAULT_PLUGINS_GROUP, load_plugins_by_group

    from kvclaims.refinement.vllm_plugin import register

    assert DEFAULT_PLUGINS_GROUP == "vllm.general_plugins"
    ours = [ep for ep in entry_points(group=DEFAULT_PLUGINS_GROUP) if ep.name == "kvclaims"]
    assert [ep.value for ep in ours] == [TARGET], \
        "entry point missing: reinstall with `.venv/bin/pip install -e .`"
    assert ours[0].load() is register
    assert load_plugins_by_group(DEFAULT_PLUGINS_GROUP)["kvclaims"] is register


PROBE = """
import json, os
from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend as B
import vllm.plugins as plugins
seen = {"stock": [B.supports_block_size(16), B.supports_block_size(32)]}
plugins.load_general_plugins()                    # switch off: declares nothing
seen["off"] = [B.supports_block_size(16), B.supports_block_size(32)]
os.environ["KVCLAIMS_CPU_BLOCK_16"] = "1"
plugins.plugins_loaded = False                    # as in a new process
plugins.load_general_plugins()
seen["on"] = [B.supports_block_size(16), B.supports_block_size(32), B.supports_block_size(8)]
print(json.dumps(seen))
"""


def test_vllms_plugin_loader_runs_it_in_a_fresh_process(vllm_layer):
    env = dict(os.environ)
    env.pop("KVCLAIMS_CPU_BLOCK_16", None)
    env["VLLM_PLUGINS"] = "kvclaims"                  # vLLM's own allow-list: ours only
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen == {"stock": [False, True], "off": [False, True], "on": [True, True, False]}
