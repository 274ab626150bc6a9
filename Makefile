# `make run`: the whole workbook on the synthetic default (CPU ok); `make test`: the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA ?= data/synthetic
PROFILE ?= quick

.PHONY: run test lab data lint clean-outputs

$(BIN)/lab3: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (lab3)"
	touch $(BIN)/lab3

data: $(BIN)/lab3
	test -f $(DATA)/train.csv || $(BIN)/lab3 synth --out $(DATA)

run: data
	$(BIN)/lab3 run --data $(DATA) --profile $(PROFILE)
	$(BIN)/lab3 report --run outputs/latest

test: $(BIN)/lab3
	$(BIN)/python -m pytest -q

lint: $(BIN)/lab3
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

lab: $(BIN)/lab3
	$(BIN)/jupyter lab notebooks/
