# One-command set-up: `make run` serves the embedded default, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
export FLASK_APP := wsgi

.PHONY: run serve install browser deploy-tools test test-pg lint format bench clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt requirements-dev.txt | $(BIN)/activate
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

## browser: Debian's chromium for the waiting-room browser test (as root, once)
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
	      || echo "chromium could not be installed: the browser test will be skipped"; \
	  else echo "not root: chromium not installed, the browser test will be skipped"; fi; \
	fi

## deploy-tools: nginx and promtool (Debian's prometheus) for tests/deploy (as root, once)
deploy-tools:
	@if ! command -v nginx >/dev/null || ! command -v promtool >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      nginx prometheus) \
	      || echo "nginx/promtool could not be installed: their checks in tests/deploy will be skipped"; \
	  else echo "not root: nginx/promtool not installed, their checks in tests/deploy will be skipped"; fi; \
	fi

## run: install, migrate, load demo data if the database is empty, serve on $(PORT)
run: install
	$(BIN)/flask db upgrade
	$(BIN)/flask seed-demo --if-empty
	PORT=$(PORT) $(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

## test: install and run the whole suite on the embedded default
test: install browser deploy-tools
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

## lint: ruff, and the import layers of pyproject.toml (import-linter)
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## bench: install requirements-bench.txt, run the benchmarks (bench/run.py), rewrite BENCHMARKS.md
##        e.g. make bench BENCH_ARGS="--only api,explain --duration 3"
$(VENV)/.bench-installed: requirements-bench.txt requirements.txt | $(VENV)/.installed
	$(BIN)/pip install --quiet -r requirements-bench.txt
	touch $@

bench: $(VENV)/.bench-installed
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) instance .pytest_cache
