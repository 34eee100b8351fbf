#!/usr/bin/env bash
# Builds the Spillway test bed binaries from their Go modules, once, and caches
# them outside the repository:
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl  (k8s.io/kubernetes)
#   etcd                                                              (go.etcd.io/etcd/server/v3)
#   kwok, kwokctl                                                     (sigs.k8s.io/kwok)
#
# Versions are pinned by the wrapper modules under e2e/testbed/go/*/go.mod and
# their checksums by the committed go.sum files (-mod=readonly: the Go toolchain
# refuses anything that does not match).
#
# Usage: build-binaries.sh            build if needed; print the bin directory on stdout
#        build-binaries.sh --print-dir print the bin directory without building
#        build-binaries.sh --version   print the test bed version string
# Env:   SPILLWAY_TESTBED_CACHE  cache root (default ${XDG_CACHE_HOME:-~/.cache}/spillway/testbed)
#        SPILLWAY_TESTBED_REBUILD=1  ignore the cache stamp and rebuild
#        SPILLWAY_TESTBED_GO     the go command to use (default: go on PATH, then /usr/local/go/bin/go)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mods="$here/go"

# The pinned versions are the wrapper modules' requirements.
required() {
  local v
  v="$(sed -nE "s#^(require)?[[:space:]]*$2 (v[^ ]+).*#\2#p" "$mods/$1/go.mod" | head -n1)"
  [[ -n "$v" ]] || { echo "testbed: $mods/$1/go.mod does not require $2" >&2; exit 1; }
  echo "$v"
}
K8S_VERSION="$(required kube k8s.io/kubernetes)"
ETCD_VERSION="$(required etcd go.etcd.io/etcd/server/v3)"
KWOK_VERSION="$(required kwok sigs.k8s.io/kwok)"
TESTBED_VERSION="k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}"

cache_root="${SPILLWAY_TESTBED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/spillway/testbed}"
dir="$cache_root/$TESTBED_VERSION"
bin="$dir/bin"
stamp="$dir/.complete"
binaries=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok kwokctl)

log() { printf 'testbed: %s\n' "$*" >&2; }
die() { printf 'testbed: %s\n' "$*" >&2; exit 1; }

case "${1:-}" in
  --print-dir) echo "$bin"; exit 0 ;;
  --version) echo "$TESTBED_VERSION"; exit 0 ;;
  "") ;;
  *) die "unknown argument '$1' (use --print-dir or --version)" ;;
esac

# The stamp records what was built, so an edited wrapper module or script
# invalidates the cache, and a half-built cache (no stamp) is rebuilt.
fingerprint() {
  cat "${BASH_SOURCE[0]}" "$mods"/*/go.mod "$mods"/*/go.sum "$mods"/etcd/main.go | sha256sum | cut -d' ' -f1
}
want="$TESTBED_VERSION $(fingerprint)"

cached() {
  [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] || return 1
  local b
  for b in "${binaries[@]}"; do [[ -x "$bin/$b" ]] || return 1; done
}

if [[ "${SPILLWAY_TESTBED_REBUILD:-}" != 1 ]] && cached; then
  echo "$bin"
  exit 0
fi

go_bin="${SPILLWAY_TESTBED_GO:-$(command -v go || true)}"
if [[ -z "$go_bin" && -x /usr/local/go/bin/go ]]; then go_bin=/usr/local/go/bin/go; fi
[[ -n "$go_bin" && -x "$(command -v "$go_bin" || true)" ]] || die "Go 1.22+ is required to build the test bed: install it from https://go.dev/dl or \`apt-get install golang\`, then rerun"
go_minor="$("$go_bin" env GOVERSION | sed -nE 's/^go1\.([0-9]+).*/\1/p')"
[[ -n "$go_minor" && "$go_minor" -ge 22 ]] ||
  die "Go 1.22+ is required to build the test bed, found $("$go_bin" env GOVERSION): install it from https://go.dev/dl"

mkdir -p "$bin"
rm -f "$stamp"

export CGO_ENABLED=0
# Checksums come from the committed go.sum; nothing may be added on the fly.
export GOFLAGS="-mod=readonly -buildvcs=false"
build_flags=(-trimpath)
started=$SECONDS

# A reproducible build date: the release time the module proxy records.
k8s_date="$(cd "$mods/kube" && "$go_bin" list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes)"
k8s_minor="${K8S_VERSION#v1.}"; k8s_minor="${k8s_minor%%.*}"
kube_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kube_ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$k8s_minor"
  kube_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$k8s_date"
done

log "building Kubernetes $K8S_VERSION control plane into $bin (cold: about 10 min on 2 cores)"
(cd "$mods/kube" && "$go_bin" build "${build_flags[@]}" -ldflags "$kube_ldflags" -o "$bin/" \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler \
  k8s.io/kubernetes/cmd/kubectl)
log "kubernetes done after $((SECONDS - started))s"

log "building etcd $ETCD_VERSION"
(cd "$mods/etcd" && "$go_bin" build "${build_flags[@]}" \
  -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_VERSION" -o "$bin/etcd" .)
log "etcd done after $((SECONDS - started))s"

log "building kwok $KWOK_VERSION"
(cd "$mods/kwok" && "$go_bin" build "${build_flags[@]}" \
  -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=$K8S_VERSION" \
  -o "$bin/" sigs.k8s.io/kwok/cmd/kwok sigs.k8s.io/kwok/cmd/kwokctl)

for b in "${binaries[@]}"; do
  [[ -x "$bin/$b" ]] || die "build finished but $bin/$b is missing"
done
echo "$want" >"$stamp"
log "built ${binaries[*]} in $((SECONDS - started))s ($(du -sh "$bin" | cut -f1) in $bin)"
echo "$bin"
