# Two commands set everything up on a fresh machine: `make repro` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: repro test install mlflow-ui dashboard bench servers servers-stop

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,dashboard]'
	touch $(STAMP)

install: $(STAMP)

## Run the whole pipeline (download -> preprocess -> fid_stats -> train -> evaluate, tune) with params.yaml
repro: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro
	@$(BIN)/python -m pipeline.summary

## Run the test suite: TEST_WORKERS pytest-xdist processes, one file each at a time, one torch thread each
TEST_WORKERS ?= 2
test: $(STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

## The MLflow UI on 127.0.0.1:5000 (one worker, no job runners); prints the URL of the training runs
mlflow-ui: $(STAMP)
	$(BIN)/python -m ganops.tracking.ui --port 5000

dashboard: $(STAMP)
	$(BIN)/optuna-dashboard sqlite:///results/tune/study.db --host 127.0.0.1 --port 8080

## PostgreSQL (unix socket) + MLflow server (127.0.0.1:$(SERVERS_PORT), proxied artifacts) in .servers/ for a one-machine team
SERVERS_PORT ?= 5000
servers: $(STAMP)
	$(BIN)/python -m ganops.servers start --folder .servers --port $(SERVERS_PORT)

servers-stop: $(STAMP)
	$(BIN)/python -m ganops.servers stop --folder .servers

bench: $(STAMP)
	$(BIN)/python -m bench.train_speed
	$(BIN)/python -m bench.tracking_overhead
	$(BIN)/python -m bench.fid_speed
	$(BIN)/python -m bench.tune_scale
