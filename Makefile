# Every target creates .venv and installs the project with its dev extras if needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint pytest bench torture docs clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e ".[dev]"
	@touch $(STAMP)

## demo: run the coffee-shop service end to end on a SQLite file, crash and restore included
demo: $(STAMP)
	$(PY) -m examples.demo

## test: lint (ruff, mypy --strict) then the whole test suite; a run with no tests fails
test: lint pytest

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

pytest: $(STAMP)
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a broken run"; exit 1; fi; \
	exit $$rc

## torture: the long reliability runs (50 SIGKILLs each on SQLite and PostgreSQL, a PostgreSQL
## restart, three engine processes with one killed, 1 vs 3 process throughput), then their report
TORTURE_KILLS ?= 50
TORTURE_REPORT := .bench/torture-report.jsonl
torture: $(STAMP)
	@mkdir -p .bench && rm -f $(TORTURE_REPORT)
	@FASM_ES_TORTURE=1 FASM_ES_TORTURE_KILLS=$(TORTURE_KILLS) \
	FASM_ES_TORTURE_REPORT=$(CURDIR)/$(TORTURE_REPORT) \
	$(PY) -m pytest tests/reliability -q -s $(PYTEST_ARGS); rc=$$?; \
	$(PY) tests/reliability/report.py $(TORTURE_REPORT) || rc=1; exit $$rc

## bench: the benchmarks, each figure beside a baseline measured in the same run
bench: $(STAMP)
	$(PY) -m benchmarks $(BENCH_ARGS)

## docs: build the documentation site into site/ with mkdocs --strict (any warning fails)
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis .bench site
