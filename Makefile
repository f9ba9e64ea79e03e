# Every target bootstraps its own virtualenv: a fresh machine needs only python3.11.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp-deps

.PHONY: demo test lint format bench bench-quick clean api-fuzz

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/offload demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

api-fuzz: $(STAMP)
	BIN=$(BIN) bash scripts/api-fuzz.sh

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests

format: $(STAMP)
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

# wrk drives the HTTP scenarios (bench/http.py); without it they are skipped with the reason.
WRK_INSTALL = command -v wrk >/dev/null 2>&1 || apt-get install -y -qq wrk >/dev/null 2>&1 \
	|| (apt-get update -qq && apt-get install -y -qq wrk >/dev/null) \
	|| echo "bench: wrk could not be installed; the HTTP wrk scenarios will be skipped"

bench: $(STAMP)
	bash bench/bootstrap.sh
	@$(WRK_INSTALL)
	.venv-bench/bin/python -m bench.run --json docs/bench-results.json \
		--chart docs/bench-chart.png --markdown docs/bench-table.md

bench-quick: $(STAMP)
	bash bench/bootstrap.sh
	@$(WRK_INSTALL)
	.venv-bench/bin/python -m bench.run --quick --json .bench/quick-results.json \
		--chart .bench/quick-chart.png --markdown .bench/quick-table.md

clean:
	rm -rf $(VENV) .venv-bench build src/*.egg-info
