# The two commands of the quick start: `make serve` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= $(or $(RUNYARD_HOST),127.0.0.1)
PORT ?= $(or $(RUNYARD_PORT),8000)

.PHONY: install serve test lint imports typecheck unit bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/.installed

serve: install  ## install, migrate and start the service (local target, offline data)
	RUNYARD_HOST=$(HOST) RUNYARD_PORT=$(PORT) $(BIN)/python -m service

lint: install
	$(BIN)/ruff check .

imports: install  ## the layering contracts in pyproject.toml ([tool.importlinter])
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy service trainer

test: install lint imports typecheck  ## install and run every test
	$(BIN)/pytest

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .runyard
