# Fresh machine: `make demo` installs and runs the embedded demo; `make test` runs the tests.
VENV ?= .venv
PY := $(VENV)/bin/python
SNAKEMAKE := $(VENV)/bin/snakemake

.PHONY: install demo test test-fast lint format report

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch first: anything unpinned would pull a CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

install: $(VENV)/.installed

demo: install
	$(SNAKEMAKE) --cores 2

report: demo
	$(SNAKEMAKE) --cores 1 --report results/report.html

test: install
	$(PY) -m pytest -q

# The unit layer: the package in process, under a minute on 2 cores.
test-fast: install
	$(PY) -m pytest -q tests/unit

lint: install
	$(SNAKEMAKE) --lint
	$(VENV)/bin/snakefmt --check Snakefile rules/
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/snakefmt Snakefile rules/
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .
