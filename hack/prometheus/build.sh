#!/usr/bin/env bash
# Builds prometheus and promtool from the pinned module in this directory into a
# cache directory keyed by version and go.sum; skips the build when cached.
# Prints the directory. (The web UI's assets are not embedded: the tests use the API.)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VERSION=$(grep -oE 'github.com/prometheus/prometheus v[0-9][^ ]*' "$here/go.mod" | head -1 | cut -d' ' -f2)
cache_root="${KUBEML_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubeml}"
# Only the Kubernetes service discovery is compiled in: the cloud SDKs behind the
# other mechanisms (AWS, Azure, GCE, ...) are most of a cold build's time.
TAGS=remove_all_sd,enable_kubernetes_sd
out="$cache_root/bin/prometheus-${VERSION}-sd-k8s-$(sha256sum "$here/go.sum" | cut -c1-12)"
# One build at a time per cache: a second caller waits, then finds the result.
mkdir -p "$cache_root/bin"
exec 9>"$cache_root/bin/.build.lock"
flock 9
if [[ -x "$out/prometheus" && -x "$out/promtool" ]]; then
  echo "$out"
  exit 0
fi
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
mkdir -p "$out.partial"
cd "$here"
ver="-X github.com/prometheus/common/version.Version=${VERSION#v} -X github.com/prometheus/common/version.Branch=kubeml"
start=$(date +%s)
for cmd in prometheus promtool; do
  t0=$(date +%s)
  echo ">> building $cmd ..." >&2
  go build -trimpath -tags "$TAGS" -ldflags "-s -w $ver" -o "$out.partial/$cmd" "github.com/prometheus/prometheus/cmd/$cmd"
  echo ">> built $cmd in $(( $(date +%s) - t0 ))s" >&2
done
rm -rf "$out"
mv "$out.partial" "$out"
echo ">> prometheus ready in $(( $(date +%s) - start ))s: $(du -sh "$out" | cut -f1)" >&2
echo "$out"
