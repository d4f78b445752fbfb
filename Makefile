# Every target creates or reuses .venv and installs what it needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.kvclaims-installed

.PHONY: check-spec test bench-spec venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

check-spec: $(STAMP)
	$(BIN)/kvclaims check

test: $(STAMP)
	$(BIN)/python -m pytest

bench-spec: $(STAMP)
	$(BIN)/python bench/bench_spec.py

clean:
	rm -rf out build *.egg-info
