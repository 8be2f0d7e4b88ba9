# Every target creates .venv when it is missing (through scripts/install.sh, the one install path).
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint typecheck imports unit clean

$(STAMP): pyproject.toml scripts/install.sh
	bash scripts/install.sh $(VENV) dev
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/semsearch demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

imports: $(STAMP)
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/python -m pytest

test: lint typecheck imports unit

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
