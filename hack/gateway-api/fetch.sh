#!/usr/bin/env bash
# Fetches the Gateway API's standard-channel CRDs (for the exposure tests) from the
# Go module proxy: the sigs.k8s.io/gateway-api module zip carries
# config/crd/standard/*.yaml. Pinned by version and by the module's h1: hash;
# cached under ~/.cache/kubeml. Prints the directory holding the CRD files
# (progress goes to stderr). Nothing here is committed to the repository.
set -euo pipefail
GATEWAY_API_VERSION=v1.6.3
# go.sum's line for the module zip: a different download fails loudly.
GATEWAY_API_SUM="h1:lKpJa5bGlraC/QeACvCpsHLdmO6y0iKfzVl6gzaFEYc="
cache_root="${KUBEML_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubeml}"
out="$cache_root/gateway-api/${GATEWAY_API_VERSION}/standard"

mkdir -p "$cache_root/gateway-api"
exec 9>"$cache_root/gateway-api/.fetch.lock"
flock 9
if [[ -f "$out/.complete" ]]; then
  echo "$out"
  exit 0
fi

echo ">> downloading sigs.k8s.io/gateway-api@${GATEWAY_API_VERSION} from the Go module proxy ..." >&2
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Outside any module: only the download is wanted, never a build.
json="$(cd "$work" && GOTOOLCHAIN=local GOFLAGS=-mod=mod go mod download -json \
  "sigs.k8s.io/gateway-api@${GATEWAY_API_VERSION}")"
field() { printf '%s\n' "$json" | sed -n "s/^[[:space:]]*\"$1\": \"\\(.*\\)\",\\{0,1\\}$/\\1/p"; }
if [[ -n "$(field Error)" ]]; then
  echo "!! go mod download failed: $(field Error)" >&2
  exit 1
fi
sum="$(field Sum)"
if [[ "$sum" != "$GATEWAY_API_SUM" ]]; then
  echo "!! sigs.k8s.io/gateway-api@${GATEWAY_API_VERSION} has sum '$sum', expected $GATEWAY_API_SUM" >&2
  exit 1
fi
src="$(field Dir)/config/crd/standard"
if [[ ! -d "$src" ]]; then
  echo "!! $src is missing from the module" >&2
  exit 1
fi
rm -rf "$out" "$out.partial"
mkdir -p "$out.partial"
n=0
for f in "$src"/*.yaml; do
  # The CRDs only (the channel also ships an admission policy).
  if grep -q '^kind: CustomResourceDefinition$' "$f"; then
    cp "$f" "$out.partial/"
    n=$((n + 1))
  fi
done
if [[ "$n" -eq 0 || ! -f "$out.partial/gateway.networking.k8s.io_httproutes.yaml" ]]; then
  echo "!! no HTTPRoute CRD among the $n CRDs of $src" >&2
  exit 1
fi
touch "$out.partial/.complete"
mv "$out.partial" "$out"
echo ">> $n standard-channel CRDs of Gateway API ${GATEWAY_API_VERSION} in $out" >&2
echo "$out"
