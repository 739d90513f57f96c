# The two commands of the quick start: `make serve` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# azure-ai-ml (the SDK v2 backend) does not resolve next to the `azure` extra of SDK v1, so its
# tests run in a venv of their own, with the `azure-v2` extra instead (see pyproject.toml).
V2_VENV ?= .venv-v2
V2_BIN := $(V2_VENV)/bin
V2_TESTS := tests/unit/test_azureml_v2_contract.py tests/integration/test_azure_v2_backend.py \
	tests/integration/test_sweeps_azure_v2.py tests/integration/test_trainer_mlflow.py \
	tests/unit/test_azureml_v2_serving_contract.py tests/integration/test_azure_v2_endpoints.py
HOST ?= $(or $(RUNYARD_HOST),127.0.0.1)
PORT ?= $(or $(RUNYARD_PORT),8000)

.PHONY: install install-v2 serve test fuzz lint imports typecheck unit bench bench-issue17 bench-issue17-quick clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/.installed

$(V2_BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(V2_VENV)
	$(V2_BIN)/pip install -q --upgrade pip
	$(V2_BIN)/pip install -q -e '.[dev,azure-v2]'
	$(V2_BIN)/pip check
	touch $@

install-v2: $(V2_BIN)/.installed

serve: install  ## install, migrate and start the service (local target, offline data)
	RUNYARD_HOST=$(HOST) RUNYARD_PORT=$(PORT) $(BIN)/python -m service

lint: install
	$(BIN)/ruff check .

imports: install  ## the layering contracts in pyproject.toml ([tool.importlinter])
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy service trainer

test: install install-v2 lint imports typecheck  ## install and run every test
	$(BIN)/pytest --durations=25 $(addprefix --ignore=,$(V2_TESTS))
	$(V2_BIN)/pytest --durations=10 $(V2_TESTS)

fuzz: install  ## schemathesis, every check and phase, 200 examples per operation, with and without keys
	RUNYARD_FUZZ_EXAMPLES=200 $(BIN)/pytest tests/e2e/test_schemathesis.py

bench: install
	$(BIN)/python -m bench

bench-issue17: install  ## every row of issue 17 side by side, written to docs/performance.md (~20 min)
	$(BIN)/python -m bench.issue17

bench-issue17-quick: install  ## the same, shorter runs (~12 min)
	$(BIN)/python -m bench.issue17 --quick

clean:
	rm -rf $(VENV) $(V2_VENV) .runyard
