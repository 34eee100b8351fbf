#!/usr/bin/env bash
# Installs what the test bed's image builds need, from Debian's packages, when missing:
#   buildah         builds the images (vfs storage, chroot isolation: no daemon, no Docker)
#   busybox-static  the workload image's shell and tools
#   mmdebstrap      the Debian root filesystem under the Spillway image's base
#   gcc, libc6-dev  the static pause program
# Called by .ci/run and by build.sh; needs root (apt-get) only when something is missing.
set -euo pipefail

log() { printf 'images: %s\n' "$*" >&2; }

packages=(buildah busybox-static mmdebstrap gcc libc6-dev)
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'; }
need=()
for p in "${packages[@]}"; do installed "$p" || need+=("$p"); done
((${#need[@]} == 0)) && exit 0

if [[ "$(id -u)" != 0 ]]; then
  log "missing ${need[*]}: install them (apt-get install ${need[*]}) or rerun as root"
  exit 1
fi
log "installing Debian packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
# Other setup may hold the dpkg lock (the real nodes' containerd install): wait for it.
apt-get update -qq -o DPkg::Lock::Timeout=600
apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends "${need[@]}" >/dev/null
