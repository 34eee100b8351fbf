#!/usr/bin/env bash
# Builds one of the test bed's container images as an OCI archive, with buildah (vfs
# storage, chroot isolation: no daemon, no registry, no Docker engine).
#
# Usage: build.sh <image> <out-dir> <ref>
#   image    pause | workload
#   out-dir  the cache entry to fill: out-dir/image.tar and, last, out-dir/.complete
#   ref      the name stored in the archive, e.g. docker.io/local/pause:0123abcd
# Normally run by ensureImages() (e2e/images/index.ts), which picks out-dir from a hash of
# the image's inputs; two runs that want the same entry wait for each other (flock).
# Progress goes to stderr, one line per step.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log() { printf 'images: %s\n' "$*" >&2; }
die() { printf 'images: %s\n' "$*" >&2; exit 1; }

(($# == 3)) || die "usage: build.sh <image> <out-dir> <ref>"
image="$1" out="$2" ref="$3"
case "$image" in
  pause | workload) ;;
  *) die "unknown image '$image' (known: pause, workload)" ;;
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

"build_$image"
log "$image: writing the OCI archive as $ref"
bh commit --quiet --format oci "$ctr" "$ref" >/dev/null
bh push --quiet "$ref" "oci-archive:$work/image.tar:$ref"
mv "$work/image.tar" "$out/image.tar"
echo "$ref" >"$out/.complete"
