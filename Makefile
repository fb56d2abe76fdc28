# edulake: the two commands a newcomer needs are `make demo` and `make test`.
# Both set up everything they need on a fresh machine (a .venv, pip packages and,
# for the tests, the OpenSSH server and Chromium from Debian).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
# edulake's own log lines (HTTP retries, SFTP reconnects, per-file errors) in the Prefect UI.
export PREFECT_LOGGING_EXTRA_LOGGERS ?= edulake
# A busy or small machine starts the temporary Prefect server slowly (default 20 s is short).
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 180

.PHONY: demo demo-libinsight test check bench setup setup-test clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,bench]'
	touch $@

setup: $(VENV)/.installed

# System packages the integration tests use (real sshd for the SFTP tests, headless
# Chromium for the dashboard tests and `edulake report --screenshot`).
setup-test: setup
	@command -v /usr/sbin/sshd >/dev/null 2>&1 || { \
	  echo "installing openssh-server (needs root)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-server; }
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium (needs root)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; }

## The main job on the embedded default: bundled Clever test data -> ./lake -> DuckDB, prints answers.
demo: setup
	PREFECT_HOME=$(CURDIR)/.prefect $(PY) -m edulake demo

## The LibInsight pipeline against the bundled LibInsight-compatible local server.
demo-libinsight: setup
	PREFECT_HOME=$(CURDIR)/.prefect $(PY) -m edulake demo-libinsight

## The whole test suite (unit + integration against real servers).
test: setup-test
	PREFECT_HOME=$$(mktemp -d) $(PY) -m pytest $(PYTEST_ARGS)

## Lint, format check and type check.
check: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: setup
	PREFECT_HOME=$$(mktemp -d) $(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf lake lake-protected .prefect .pytest_cache .mypy_cache .ruff_cache
