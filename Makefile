# Two commands do all the set-up on a fresh Debian machine (as root): `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := .make
# R 4.2.2, the R packages and Python 3.11 from Debian: the same pinned list the Dockerfile installs.
APT_PACKAGES := $(shell grep -v '^\s*\#' apt-packages.txt)
# Development only (the R client package's tests), not in the scoring image.
DEV_ONLY_PACKAGES := r-cran-curl r-cran-cli r-cran-testthat r-cran-ggplot2 r-cran-webfakes
# Headless browser for the dashboard tests: Debian's chromium, driven by playwright (never `playwright install`).
# Development only: not in the scoring image.
BROWSER_PACKAGES := chromium
N ?= 300

.PHONY: setup test test-fast demo up bench bench-scale lint clean

setup: $(STAMP)/apt $(STAMP)/npm $(STAMP)/venv

# --no-install-recommends keeps forecast from pulling ~100 packages.
$(STAMP)/apt: apt-packages.txt Makefile
	@mkdir -p $(STAMP)
	@missing="$$(for p in $(APT_PACKAGES) $(DEV_ONLY_PACKAGES) $(BROWSER_PACKAGES); do dpkg -s $${p%%=*} >/dev/null 2>&1 || echo $$p; done; \
	  command -v npm >/dev/null || echo 'nodejs npm')"; \
	if [ -n "$$missing" ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    $$missing >/dev/null; fi
	@touch $@

$(STAMP)/npm: package.json package-lock.json
	@mkdir -p $(STAMP)
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(STAMP)/venv: requirements.txt requirements-dev.txt scoring/requirements.txt $(STAMP)/apt
	@mkdir -p $(STAMP)
	test -x $(PY) || python3 -m venv $(VENV)
	RPY2_CFFI_MODE=ABI $(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	@touch $@

# Azure (infra/README.md). checkov pins packaging and python-dateutil below the app's pins: a venv of its own.
TOOLS := .venv-tools
NAME ?= rscoring
LOCATION ?= westeurope
DEPLOY_FLAGS ?=
.PHONY: deploy destroy clean-infra
setup: $(TOOLS)/bin/checkov
clean: clean-infra

$(TOOLS)/bin/checkov: infra/requirements-checkov.txt
	test -x $(TOOLS)/bin/python || python3 -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q --disable-pip-version-check -r infra/requirements-checkov.txt
	@touch $@

# make deploy NAME=rscoring LOCATION=westeurope [DEPLOY_FLAGS=--vnet | DEPLOY_FLAGS=--print-only]: image,
# templates, app, Event Grid, smoke test. Needs `az login`. make destroy removes both resource groups.
deploy: $(STAMP)/venv
	$(PY) -m infra.deploy deploy --name $(NAME) --location $(LOCATION) $(DEPLOY_FLAGS)

destroy: $(STAMP)/venv
	$(PY) -m infra.deploy destroy --name $(NAME) $(DEPLOY_FLAGS)

clean-infra:
	rm -rf $(TOOLS) dist

test: setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

# The unit layer: no Azurite, R, ARM stand-in or dev host (tests marked `integration` are left out).
test-fast: setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -m "not integration"

demo: setup
	$(PY) -m devenv.demo --postcodes $(N)

# The demo, then the stack stays up (dashboard URL printed) until Ctrl-C.
up: setup
	$(PY) -m devenv.demo --postcodes $(N) --keep-running

bench: setup
	$(PY) bench/run.py

# 30,000 postcodes, 3 repeats (~15 min): pipeline steps, the Functions process's peak memory, e2e30k_vs_rscript.
bench-scale: setup
	$(PY) bench/run.py --scale

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(STAMP) $(VENV) node_modules .dev bench/out
