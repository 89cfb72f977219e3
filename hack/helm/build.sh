#!/usr/bin/env bash
# Builds helm from the pinned module in this directory into a cache directory
# keyed by version and go.sum, skipping the build when it is already there.
# Prints the path of the helm binary (progress goes to stderr).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HELM_VERSION=v3.22.0
cache_root="${KUBEML_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubeml}"
# go.sum's hash in the key: a changed pin never reuses a stale binary.
key="helm-${HELM_VERSION}-$(sha256sum "$here/go.sum" | cut -c1-12)"
out="$cache_root/bin/$key"

# One build at a time per cache (as for the other binaries): a second caller
# waits, then finds the result.
mkdir -p "$cache_root/bin"
exec 9>"$cache_root/bin/.build.lock"
flock 9
if [[ -x "$out/helm" ]]; then
  echo "$out/helm"
  exit 0
fi

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
cd "$here"
# helm's own Makefile stamps the version and the Kubernetes version its
# client-go speaks (major+1 because client-go is v0.x); `helm version` and
# `.Capabilities.KubeVersion` in `helm template` read these.
kgo="$(go list -f '{{.Version}}' -m k8s.io/client-go)"  # v0.37.0
kminor="$(echo "$kgo" | cut -d. -f2)"
ld="-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
ld="$ld -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in pkg/lint/rules pkg/chartutil; do
  ld="$ld -X helm.sh/helm/v3/${pkg}.k8sVersionMajor=1 -X helm.sh/helm/v3/${pkg}.k8sVersionMinor=${kminor}"
done
mkdir -p "$out.partial"
t0=$(date +%s)
echo ">> building helm ${HELM_VERSION} ..." >&2
go build -trimpath -ldflags "$ld" -o "$out.partial/helm" helm.sh/helm/v3/cmd/helm
rm -rf "$out"
mv "$out.partial" "$out"
echo ">> built helm in $(( $(date +%s) - t0 ))s" >&2
echo "$out/helm"
