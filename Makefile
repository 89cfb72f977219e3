# The two commands a newcomer needs:
#   make demo   the whole lifecycle on the embedded local control plane
#   make test   every test (unit, integration, e2e), as CI runs them (builds the images first)
# Both set up what they need on a fresh machine (virtualenv, control-plane binaries).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup binaries test unit lint crds docs demo down clean

$(BIN)/.installed: pyproject.toml local/pyproject.toml
	@echo ">> creating $(VENV) and installing kubeml, its dev tools and kubeml-local (the local cluster)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --progress-bar on -e '.[dev]' -e ./local
	@touch $@

setup: $(BIN)/.installed

# etcd, kube-apiserver, kube-controller-manager, kubectl, prometheus, promtool and helm,
# built once from the Go module proxy and cached under ~/.cache/kubeml (cold: see README);
# and the Gateway API's CRDs (the exposure tests install them), from the same proxy.
binaries:
	@hack/k8s/build.sh >/dev/null
	@hack/prometheus/build.sh >/dev/null
	@hack/helm/build.sh >/dev/null
	@hack/gateway-api/fetch.sh >/dev/null

demo: setup binaries
	$(BIN)/kubeml demo

down: setup
	$(BIN)/kubeml local down

unit: setup
	$(BIN)/python -m pytest tests/unit

test: setup binaries images-local
	$(BIN)/python -m pytest tests

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

crds: setup
	$(BIN)/kubeml crds
	$(BIN)/kubeml docs
	$(BIN)/kubeml health-checks
	$(BIN)/kubeml dashboard

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

# ---- chart, images and kind (docs/install.md) -------------------------------------
# helm is built from the Go module proxy once and cached like the control-plane
# binaries; `make kind-install` uses a helm on PATH if there is one.
HELM_BUILD := hack/helm/build.sh
IMAGE_REGISTRY ?= ghcr.io/kubeml
# Images are tagged with the chart's appVersion, which the chart defaults to.
IMAGE_TAG ?= $(shell sed -n 's/^appVersion: *"*\([^"]*\)"*$$/\1/p' charts/kubeml/Chart.yaml)
DOCKER ?= docker
KIND ?= kind
KIND_CLUSTER ?= kubeml
KUBECTL ?= kubectl
KIND_NAMESPACE ?= ml
MINIO_PASSWORD_FILE := .kubeml/kind-minio-password

.PHONY: helm chart-crds chart-lint images images-local kind-up kind-load kind-install kind-iris kind-down

helm:
	@$(HELM_BUILD)

# The chart ships the generated CRDs byte for byte (tests/unit/test_chart.py checks).
chart-crds:
	cp crds/*.yaml charts/kubeml/crds/

chart-lint:
	"$$($(HELM_BUILD))" lint charts/kubeml --strict

# BASE_IMAGE (optional) replaces the Dockerfiles' default base, e.g. a mirror of it.
BASE_IMAGE ?=
BASE_IMAGE_ARG := $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE))

images:
	$(DOCKER) build $(BASE_IMAGE_ARG) -f images/operator/Dockerfile -t $(IMAGE_REGISTRY)/operator:$(IMAGE_TAG) .
	$(DOCKER) build $(BASE_IMAGE_ARG) -f images/runtime/Dockerfile -t $(IMAGE_REGISTRY)/runtime:$(IMAGE_TAG) .

# The same two images without Docker or registry access: buildah (chroot isolation) on a
# Debian base made by mmdebstrap, tagged ghcr.io/kubeml/<name>:<appVersion> and cached by
# content (docs/install.md, "Building the images without Docker").
images-local: setup
	$(BIN)/kubeml local images

kind-up:
	$(KIND) create cluster --name $(KIND_CLUSTER) --config kind-config.yaml

kind-load:
	$(KIND) load docker-image --name $(KIND_CLUSTER) \
		$(IMAGE_REGISTRY)/operator:$(IMAGE_TAG) $(IMAGE_REGISTRY)/runtime:$(IMAGE_TAG)

# The chart with its MinIO (NodePort 30900 = host port 9000 in kind-config.yaml) and
# the S3 Secret in the workload namespace. The MinIO password is generated once and
# kept in .kubeml/ (git-ignored) so upgrades keep it.
kind-install:
	@mkdir -p $(dir $(MINIO_PASSWORD_FILE))
	@test -s $(MINIO_PASSWORD_FILE) || \
		python3 -c 'import secrets; print(secrets.token_hex(16))' > $(MINIO_PASSWORD_FILE)
	$(KUBECTL) create namespace $(KIND_NAMESPACE) --dry-run=client -o yaml | $(KUBECTL) apply -f -
	$(KUBECTL) label --overwrite namespace $(KIND_NAMESPACE) \
		pod-security.kubernetes.io/enforce=restricted
	helm="$$(command -v helm || $(HELM_BUILD))"; \
	"$$helm" upgrade --install kubeml charts/kubeml \
		--namespace kubeml-system --create-namespace --wait --timeout 5m \
		--set image.repository=$(IMAGE_REGISTRY)/operator \
		--set runtimeImage.repository=$(IMAGE_REGISTRY)/runtime \
		--set image.tag=$(IMAGE_TAG) --set runtimeImage.tag=$(IMAGE_TAG) \
		--set minio.enabled=true \
		--set minio.rootPassword="$$(cat $(MINIO_PASSWORD_FILE))" \
		--set minio.service.type=NodePort --set minio.service.nodePort=30900 \
		--set 's3.credentials.namespaces={$(KIND_NAMESPACE)}' \
	&& "$$helm" test kubeml --namespace kubeml-system

# The iris pipeline, and its model endpoint on the host (NodePort 30080 = port 8080).
define IRIS_NODEPORT
apiVersion: v1
kind: Service
metadata:
  name: iris-nodeport
spec:
  type: NodePort
  selector:
    kubeml.io/deployment: iris
    app.kubernetes.io/component: server
  ports:
    - name: http
      port: 80
      targetPort: http
      nodePort: 30080
endef
export IRIS_NODEPORT

kind-iris:
	$(KUBECTL) apply -n $(KIND_NAMESPACE) -f examples/iris/
	printf '%s\n' "$$IRIS_NODEPORT" | $(KUBECTL) apply -n $(KIND_NAMESPACE) -f -
	$(KUBECTL) wait -n $(KIND_NAMESPACE) --for=condition=Ready dataset/iris --timeout=10m
	$(KUBECTL) wait -n $(KIND_NAMESPACE) --for=condition=Succeeded trainingrun/iris-rf --timeout=20m
	$(KUBECTL) wait -n $(KIND_NAMESPACE) --for=condition=Ready deployments.kubeml.io/iris --timeout=10m
	@echo "model endpoint: http://127.0.0.1:8080 (try /v2/health/ready)"

kind-down:
	$(KIND) delete cluster --name $(KIND_CLUSTER)
