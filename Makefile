# The two commands a newcomer needs:
#   make demo   the whole lifecycle on the embedded local control plane
#   make test   every test (unit, integration, e2e), as CI runs them
# Both set up what they need on a fresh machine (virtualenv, control-plane binaries).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup binaries test unit lint crds docs demo down clean

$(BIN)/.installed: pyproject.toml
	@echo ">> creating $(VENV) and installing kubeml with its dev tools"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --progress-bar on -e '.[dev]'
	@touch $@

setup: $(BIN)/.installed

# etcd, kube-apiserver, kube-controller-manager, kubectl, prometheus and promtool,
# built once from the Go module proxy and cached under ~/.cache/kubeml (cold: see README).
binaries:
	@hack/k8s/build.sh >/dev/null
	@hack/prometheus/build.sh >/dev/null

demo: setup binaries
	$(BIN)/kubeml demo

down: setup
	$(BIN)/kubeml local down

unit: setup
	$(BIN)/python -m pytest tests/unit

test: setup binaries
	$(BIN)/python -m pytest tests

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

crds: setup
	$(BIN)/kubeml crds
	$(BIN)/kubeml docs

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
