# fedgen developer commands. `make run` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.fedgen-installed

.DEFAULT_GOAL := help
.PHONY: help install run sweep test lint typecheck pytest check report-check ui-check bench bench-big docs-figures mlflow-ui clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP) ## create .venv and install fedgen with its dev tools

run: install ## run the reference study's default experiment (MLflow store: ./mlflow.db)
	$(PY) -m fedgen

sweep: install ## the gmia attack at 3 thresholds: 3 runs in one store, trained once
	$(PY) -m fedgen attack=gmia threshold=0.3,0.45,0.5 --multirun

lint: install ## ruff lint and format check
	$(VENV)/bin/ruff check fedgen hydra_plugins tests benchmarks
	$(VENV)/bin/ruff format --check fedgen hydra_plugins tests benchmarks
	$(VENV)/bin/lint-imports

typecheck: install ## mypy (strict) on the package
	$(VENV)/bin/mypy --explicit-package-bases fedgen hydra_plugins

pytest: install ## the test suite only
	$(PY) -m pytest

test: lint typecheck pytest ## everything CI checks: lint, types, tests

check: test ## alias of test

report-check: install ## render a sample leakage report in headless Chromium (build/report-check/*.png, *.pdf)
	FEDGEN_REPORT_CHECK_DIR=build/report-check $(PY) -m pytest -rs tests/test_report.py -k browser

ui-check: install ## a tiny sweep's MLflow run list (real mlflow server) and report in headless Chromium; screenshots in build/ui-check/ (docs/*.png come from here)
	rm -rf build/ui-check
	FEDGEN_UI_CHECK_DIR=build/ui-check $(PY) -m pytest -rs tests/test_mlflow_server.py -k browser
	ls build/ui-check/mlflow_runs.png build/ui-check/report.png

bench: install ## benchmarks (prints medians and ratios)
	$(PY) benchmarks/bench_default.py
	$(PY) benchmarks/bench_sweep.py
	$(PY) benchmarks/bench_defenses.py
	$(PY) benchmarks/bench_attacks.py --quick
	$(PY) benchmarks/bench_lira.py

bench-big: install ## the attacks' and LiRA's cost at 10,000 x 10,000 SNPs too (~15 min)
	$(PY) benchmarks/bench_attacks.py
	$(PY) benchmarks/bench_lira.py --setting big

docs-figures: install ## regenerate the README's figures (docs/*.png) from the default experiment
	rm -rf .docs-run
	$(PY) -m fedgen tracking=none hydra.run.dir=.docs-run
	mkdir -p docs
	cp .docs-run/figures/roc.png .docs-run/figures/gradient_norm_histogram.png docs/
	rm -rf .docs-run

mlflow-ui: install ## open the MLflow UI on ./mlflow.db (http://127.0.0.1:5000)
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db

clean: ## remove outputs and the local MLflow store (keeps .venv)
	rm -rf outputs multirun mlflow.db mlflow.db.lock mlruns .pytest_cache .mypy_cache .ruff_cache
