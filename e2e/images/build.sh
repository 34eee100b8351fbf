#!/usr/bin/env bash
# Builds one of the test bed's container images as an OCI archive, with buildah (vfs
# storage, chroot isolation: no daemon, no registry, no Docker engine).
#
# Usage: build.sh <image> <out-dir> <ref>
#   image    pause | workload | spillway-base | spillway
#   out-dir  the cache entry to fill: out-dir/image.tar and, last, out-dir/.complete
#   ref      the name stored in the archive, e.g. docker.io/local/pause:0123abcd
# Normally run by ensureImages() (e2e/images/index.ts), which picks out-dir from a hash of
# the image's inputs; two runs that want the same entry wait for each other (flock).
# Progress goes to stderr, one line per step.
#
# spillway-base needs NODE_BIN (the Node 24 binary the repo's `node` devDependency installed)
# and NPM_DIR (an npm package directory); spillway needs REPO (the build context with the
# Dockerfile), BASE_ARCHIVE and BASE_REF (the spillway-base image), and NPM_CACHE (an npm
# cache the build may read, so its `npm ci` runs need little from the registry).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log() { printf 'images: %s\n' "$*" >&2; }
die() { printf 'images: %s\n' "$*" >&2; exit 1; }

(($# == 3)) || die "usage: build.sh <image> <out-dir> <ref>"
image="$1" out="$2" ref="$3"
case "$image" in
  pause | workload | spillway-base | spillway) ;;
  *) die "unknown image '$image' (known: pause, workload, spillway-base, spillway)" ;;
esac

bash "$here/install-tools.sh"

mkdir -p "$out"
exec 9>"$out/.lock"
flock 9
if [[ -f "$out/.complete" && -f "$out/image.tar" ]]; then
  log "$image: already built by another run"
  exit 0
fi

work="$(mktemp -d "$out/.build.XXXXXX")"
ctr=""
cleanup() {
  if [[ -n "$ctr" ]]; then bh rm "$ctr" >/dev/null 2>&1 || true; fi
  # vfs layers hold plain copies; buildah's own storage cleanup unmounts what it mounted.
  bh rmi --all --force >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# A private storage per build: nothing shared with other buildah users on the machine.
bh() {
  buildah --root "$work/storage" --runroot "$work/run" --storage-driver vfs "$@"
}

rootfs="$work/rootfs"
mkdir -p "$rootfs"

# Files every small image carries: who root and nobody are, and an empty /tmp.
base_files() {
  mkdir -p "$rootfs/etc" "$rootfs/tmp" "$rootfs/root" "$rootfs/dev" "$rootfs/proc" "$rootfs/sys"
  chmod 1777 "$rootfs/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
}

build_pause() {
  log "pause: compiling pause.c (gcc -static)"
  gcc -static -O2 -Wall -Wextra -Werror -DPAUSE_VERSION="\"${ref##*:}\"" \
    -o "$rootfs/pause" "$here/pause/pause.c"
  strip "$rootfs/pause"
  ctr="$(bh from scratch)"
  bh copy "$ctr" "$rootfs/pause" /pause >/dev/null
  bh config --entrypoint '["/pause"]' --cmd '[]' --user 65534:65534 \
    --label org.opencontainers.image.title="Spillway test bed pause" "$ctr"
}

build_workload() {
  log "workload: busybox $(/bin/busybox | head -n1 | awk '{print $2}') with its applets"
  base_files
  mkdir -p "$rootfs/bin" "$rootfs/www"
  cp /bin/busybox "$rootfs/bin/busybox"
  local applet
  while read -r applet; do
    [[ "$applet" == busybox ]] || ln -s busybox "$rootfs/bin/$applet"
  done < <(/bin/busybox --list)
  echo 'hello from the Spillway workload image' >"$rootfs/www/index.html"
  ctr="$(bh from scratch)"
  bh copy "$ctr" "$rootfs" / >/dev/null
  bh config --env PATH=/bin --cmd '["/bin/sh"]' --workingdir / \
    --label org.opencontainers.image.title="Spillway test bed workload" "$ctr"
}

# Debian bookworm's Essential packages plus what Node needs (libstdc++, CA certificates),
# without docs, man pages and locales, then Node 24 and npm under /usr/local as in node:24-slim.
build_spillway_base() {
  [[ -x "${NODE_BIN:-}" ]] || die "spillway-base: NODE_BIN='${NODE_BIN:-}' is not an executable Node binary"
  [[ -f "${NPM_DIR:-}/bin/npm-cli.js" ]] || die "spillway-base: NPM_DIR='${NPM_DIR:-}' holds no bin/npm-cli.js"
  log "spillway-base: Debian bookworm root filesystem (mmdebstrap, Essential packages + libstdc++6, ca-certificates)"
  mmdebstrap --quiet --mode=root --variant=essential --include=libstdc++6,ca-certificates \
    --aptopt='Acquire::Retries "3"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    bookworm "$work/rootfs.tar" http://deb.debian.org/debian
  tar -xf "$work/rootfs.tar" -C "$rootfs"
  rm "$work/rootfs.tar"
  log "spillway-base: Node $("$NODE_BIN" --version) and npm $("$NODE_BIN" "$NPM_DIR/bin/npm-cli.js" --version)"
  install -D -m 0755 "$NODE_BIN" "$rootfs/usr/local/bin/node"
  mkdir -p "$rootfs/usr/local/lib/node_modules"
  cp -a "$NPM_DIR" "$rootfs/usr/local/lib/node_modules/npm"
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"
  ctr="$(bh from scratch)"
  bh copy "$ctr" "$rootfs" / >/dev/null
  bh config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd '["node"]' --label org.opencontainers.image.title="Spillway base (Debian + Node 24)" "$ctr"
}

# The repository's Dockerfile, unchanged, on spillway-base instead of node:24-slim.
build_spillway() {
  [[ -f "${REPO:-}/Dockerfile" ]] || die "spillway: REPO='${REPO:-}' has no Dockerfile"
  [[ -f "${BASE_ARCHIVE:-}" && -n "${BASE_REF:-}" ]] || die "spillway: BASE_ARCHIVE and BASE_REF must name the spillway-base image"
  log "spillway: loading the base image $BASE_REF"
  bh pull --quiet "oci-archive:$BASE_ARCHIVE" >/dev/null
  # The build's npm reads the host's npm cache (mounted read-only: a copy keeps it intact)
  # and prefers it to the registry.
  mkdir -p "$work/npm-cache"
  if [[ -d "${NPM_CACHE:-}/_cacache" ]]; then cp -a "$NPM_CACHE/_cacache" "$work/npm-cache/_cacache"; fi
  printf 'cache=/spillway-npm-cache\nprefer-offline=true\nupdate-notifier=false\n' >"$work/npmrc"
  log "spillway: buildah bud -f Dockerfile (NODE_IMAGE=$BASE_REF; npm ci and tsc run inside)"
  bh bud --quiet --isolation chroot --pull=never --layers=false \
    --build-arg "NODE_IMAGE=$BASE_REF" \
    --volume "$work/npm-cache:/spillway-npm-cache" --volume "$work/npmrc:/root/.npmrc:ro" \
    --format oci -f "$REPO/Dockerfile" -t "$ref" "$REPO" >/dev/null
  log "spillway: checking the entry points inside the image"
  ctr="$(bh from --pull=never "$ref")"
  bh run --isolation chroot "$ctr" -- node --version >&2
  local entry
  for entry in spillway-broker spillway-agent spillway-virtual-node spillctl; do
    bh run --isolation chroot "$ctr" -- "$entry" --help >"$work/help.txt" 2>&1 ||
      die "spillway: \`$entry --help\` failed in the image: $(tail -n1 "$work/help.txt")"
  done
  bh rm "$ctr" >/dev/null
  ctr=""
}

"build_${image//-/_}"
log "$image: writing the OCI archive as $ref"
if [[ -n "$ctr" ]]; then bh commit --quiet --format oci "$ctr" "$ref" >/dev/null; fi
bh push --quiet "$ref" "oci-archive:$work/image.tar:$ref"
mv "$work/image.tar" "$out/image.tar"
echo "$ref" >"$out/.complete"
