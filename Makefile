# EdgeModel developer commands. `make demo` and `make test` each set up what they need.
SHELL := /bin/bash
PY := .venv/bin/python
VENV_STAMP := .venv/.installed

.PHONY: setup system venv tools observability browser node test e2e unit lint audit crd demo clean

setup: system venv tools observability browser

system:  ## Debian packages: the Mosquitto broker
	@command -v mosquitto >/dev/null 2>&1 || /usr/sbin/mosquitto -h >/dev/null 2>&1 || { \
	  echo "Installing mosquitto (apt)"; \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -qq mosquitto mosquitto-clients >/dev/null; }

venv: $(VENV_STAMP)
$(VENV_STAMP): pyproject.toml devtools/pyproject.toml
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]' -e ./devtools
	touch $@

tools:  ## etcd, kube-apiserver, controller-manager, scheduler, kubectl, kwok, helm (cached)
	@bash hack/k8s-tools.sh >/dev/null  # progress goes to stderr; stdout is the bin directory

observability:  ## prometheus and promtool (apt), kube-state-metrics (cached): the alert tests
	@bash hack/observability-tools.sh >/dev/null  # progress goes to stderr; stdout is the bin directory

browser:  ## chromium (apt): the tests that open the HTML reports in a real headless browser
	@bash hack/browser-tools.sh >/dev/null  # progress goes to stderr; stdout is the browser's path

node:  ## the real node's parts (containerd, kubelet, kube-proxy, CoreDNS, metrics-server) and images (cached)
	@if [ "$$(id -u)" = 0 ]; then \
	  bash hack/node-tools.sh >/dev/null && bash hack/images.sh build >/dev/null; \
	else echo "Skipping the real node: it needs root (tests/e2e will be skipped)"; fi

test: setup node  ## the whole test suite on real components, with tests/e2e on a real node when it can start
	$(PY) -m pytest

e2e: setup node  ## only the end-to-end tests in real containers; fails if the node cannot start
	EDGEMODEL_E2E=require EDGEMODEL_E2E_REPORT=bench/results/e2e.json $(PY) -m pytest tests/e2e

unit: venv  ## fast unit tests only: no I/O, no subprocesses, no network (packaging checks run in make test)
	$(PY) -m pytest tests/unit -m "not packaging"

lint: venv  ## code-health gates
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	.venv/bin/lint-imports
	.venv/bin/bandit -q -c pyproject.toml -r edgemodel operator runtime trainer simulator backtest

audit: venv  ## known-vulnerable dependencies (pip-audit against PyPI's advisory data)
	.venv/bin/pip-audit --progress-spinner off --skip-editable

crd: venv  ## regenerate crds/ from the pydantic models
	$(PY) -m edgemodel.crd > crds/edgemodel.yaml
	cp crds/edgemodel.yaml helm/edgemodel/crds/edgemodel.yaml

demo: setup  ## the whole self-healing loop, for real, on this machine
	.venv/bin/edgemodel demo $(DEMO_ARGS)

clean:
	rm -rf .venv .demo build *.egg-info
