# `make run`: the whole workbook on the synthetic default (CPU ok); `make test`: the test suite.
# Any Python 3.11 or newer (3.11, 3.12 and 3.13 checked): PYTHON=python3.12 make run
PYTHON ?= python3
# Before .venv exists: one clear line, not a pip error, when the interpreter is too old.
PYTHON_GUARD = import sys; v = sys.version_info[:2]; sys.exit(0 if v >= (3, 11) else \
  "lab3 needs Python 3.11 or newer (3.11, 3.12, 3.13 checked); found %d.%d at %s: " \
  "choose another with PYTHON=python3.12 make ..." % (v[0], v[1], sys.executable))
VENV := .venv
BIN := $(VENV)/bin
DEFAULT_DATA := data/synthetic
DATA ?= $(DEFAULT_DATA)
PROFILE ?= quick
# how C-NMC's folds are split: stratified (per image, as the course), random, or subject (each
# patient's cells in one split); the course's CSVs and the synthetic default keep their own split
SPLIT ?= stratified

.PHONY: install lock run test lab data lint mutants clean-outputs

# pyproject.toml declares compatible ranges; constraints.txt pins the exact versions the
# project is tested with, so every .venv (and CI) is the same. `make lock` rewrites it.
$(BIN)/lab3: pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -c '$(PYTHON_GUARD)'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (lab3)"
	touch $(BIN)/lab3

# the environment alone (e.g. on a GPU machine, before running on the real data)
install: $(BIN)/lab3

# after changing pyproject.toml's dependencies: install what is new into .venv, pin what it holds
lock: $(BIN)/lab3
	$(BIN)/python -m pip install -q -e '.[dev]'
	(echo "# Exact versions make and CI install (pip install -c constraints.txt -e '.[dev]');"; \
	 echo "# written by make lock from a Python 3.11 .venv; ranges: pyproject.toml"; \
	 $(BIN)/python -m pip freeze --exclude-editable --exclude lab3) > constraints.txt.tmp
	mv constraints.txt.tmp constraints.txt

# only the synthetic default is generated; a folder of your own is never written into
data: $(BIN)/lab3
	@if [ "$(DATA)" = "$(DEFAULT_DATA)" ]; then \
	    test -f $(DATA)/train.csv || $(BIN)/lab3 synth --out $(DATA); fi

run: data
	$(BIN)/lab3 run --data $(DATA) --profile $(PROFILE) --split-mode $(SPLIT)
	$(BIN)/lab3 report --run outputs/latest

# deletes every workbook run in outputs/ (notebooks, weights, figures, submissions, reports);
# the data, the image cache and the environment stay
clean-outputs:
	rm -rf outputs

test: $(BIN)/lab3
	$(BIN)/python -m pytest -q

# Mutation testing (mutmut 3; not part of `test`): the modules and tests in pyproject.toml's
# [tool.mutmut]; writes benchmarks/results/mutants.md. MUTANTS='lab3.metrics.*' runs one module's
# and writes mutants/partial.md instead.
mutants: $(BIN)/lab3
	$(BIN)/python benchmarks/mutants.py $(foreach m,$(MUTANTS),'$(m)')

lint: $(BIN)/lab3
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

# JupyterLab on your own copies of the notebooks, in the run folder $(LAB) (`lab3 lab`; the
# default data is made first); afterwards `lab3 report --run $(LAB)` builds the PDF from them
LAB ?= outputs/lab
lab: data
	$(BIN)/lab3 lab --data $(DATA) --profile $(PROFILE) --run $(LAB)
