#!/usr/bin/env bash
# Builds Helm from its Go module (helm.sh/helm/v3/cmd/helm), once, and caches it
# outside the repository, for the chart tests in e2e/charts.
#
# The version is pinned by the wrapper module e2e/charts/go/helm/go.mod and its
# checksums by the committed go.sum (-mod=readonly). Kept apart from
# build-binaries.sh, with its own cache directory and stamp, so changing one
# never rebuilds the other.
#
# Usage: build-helm.sh             build if needed; print the bin directory on stdout
#        build-helm.sh --print-dir print the bin directory without building
#        build-helm.sh --version   print the Helm version string
# Env:   SPILLWAY_HELM_CACHE   cache root (default ${XDG_CACHE_HOME:-~/.cache}/spillway/helm)
#        SPILLWAY_HELM_REBUILD=1  ignore the cache stamp and rebuild
#        SPILLWAY_TESTBED_GO   the go command to use (default: go on PATH, then /usr/local/go/bin/go)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mod="$here/../charts/go/helm"

HELM_VERSION="$(sed -nE 's#^(require)?[[:space:]]*helm\.sh/helm/v3 (v[^ ]+).*#\2#p' "$mod/go.mod" | head -n1)"
[[ -n "$HELM_VERSION" ]] || { echo "helm: $mod/go.mod does not require helm.sh/helm/v3" >&2; exit 1; }
CLIENT_GO_VERSION="$(sed -nE 's#^[[:space:]]*k8s\.io/client-go (v[^ ]+).*#\1#p' "$mod/go.mod" | head -n1)"
[[ -n "$CLIENT_GO_VERSION" ]] || { echo "helm: $mod/go.mod does not require k8s.io/client-go" >&2; exit 1; }

cache_root="${SPILLWAY_HELM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/spillway/helm}"
dir="$cache_root/$HELM_VERSION"
bin="$dir/bin"
stamp="$dir/.complete"

log() { printf 'helm: %s\n' "$*" >&2; }
die() { printf 'helm: %s\n' "$*" >&2; exit 1; }

case "${1:-}" in
  --print-dir) echo "$bin"; exit 0 ;;
  --version) echo "$HELM_VERSION"; exit 0 ;;
  "") ;;
  *) die "unknown argument '$1' (use --print-dir or --version)" ;;
esac

fingerprint() { cat "${BASH_SOURCE[0]}" "$mod/go.mod" "$mod/go.sum" | sha256sum | cut -d' ' -f1; }
want="$HELM_VERSION $(fingerprint)"

if [[ "${SPILLWAY_HELM_REBUILD:-}" != 1 && -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$bin/helm" ]]; then
  echo "$bin"
  exit 0
fi

go_bin="${SPILLWAY_TESTBED_GO:-$(command -v go || true)}"
if [[ -z "$go_bin" && -x /usr/local/go/bin/go ]]; then go_bin=/usr/local/go/bin/go; fi
[[ -n "$go_bin" && -x "$(command -v "$go_bin" || true)" ]] || die "Go 1.24+ is required to build Helm: install it from https://go.dev/dl, then rerun"
go_minor="$("$go_bin" env GOVERSION | sed -nE 's/^go1\.([0-9]+).*/\1/p')"
[[ -n "$go_minor" && "$go_minor" -ge 24 ]] ||
  die "Go 1.24+ is required to build Helm, found $("$go_bin" env GOVERSION): install it from https://go.dev/dl"

mkdir -p "$bin"
rm -f "$stamp"
export CGO_ENABLED=0
export GOFLAGS="-mod=readonly -buildvcs=false"

# What Helm's own Makefile stamps in: its version, and the Kubernetes version that
# `helm template` and `helm lint` assume (client-go v0.N -> Kubernetes 1.N).
kube_minor="${CLIENT_GO_VERSION#v0.}"; kube_minor="${kube_minor%%.*}"
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
  ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$kube_minor"
done

started=$SECONDS
log "building Helm $HELM_VERSION into $bin (cold: about 3 min on 2 cores)"
(cd "$mod" && "$go_bin" build -trimpath -ldflags "$ldflags" -o "$bin/helm" helm.sh/helm/v3/cmd/helm)
[[ -x "$bin/helm" ]] || die "build finished but $bin/helm is missing"
echo "$want" >"$stamp"
log "built helm in $((SECONDS - started))s ($(du -sh "$bin/helm" | cut -f1))"
echo "$bin"
