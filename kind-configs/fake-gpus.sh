#!/usr/bin/env bash
# Gives the workers of a kind cluster fake GPU capacity, so Spillway can be
# tried without GPUs. Nodes are chosen by the labels the kind configs here set:
#   spillway.io/fake-gpus=N             -> nvidia.com/gpu: N
#   spillway.io/fake-mig-PROFILE=N      -> nvidia.com/mig-PROFILE: N   (e.g. PROFILE 1g.10gb)
# Capacity is an extended resource patched into the node's status; the kubelet
# keeps it and derives allocatable from it. Pods that request it run as usual
# (their containers see no GPU). Rerun after a node restarts.
#
# Usage: kind-configs/fake-gpus.sh [kube-context]   (default: the current context)
set -euo pipefail

ctx=()
if [[ -n "${1:-}" ]]; then ctx=(--context "$1"); fi
command -v kubectl >/dev/null || { echo "fake-gpus: kubectl is required" >&2; exit 1; }

patch_capacity() { # node resource quantity
  local path="/status/capacity/${2//\//~1}"
  kubectl "${ctx[@]}" patch node "$1" --subresource=status --type=json \
    -p "[{\"op\":\"add\",\"path\":\"$path\",\"value\":\"$3\"}]" >/dev/null
  echo "fake-gpus: $1: $2=$3"
}

# One "node label value" line per label of every node.
template='{{range .items}}{{$n := .metadata.name}}{{range $k, $v := .metadata.labels}}{{$n}} {{$k}} {{$v}}{{"\n"}}{{end}}{{end}}'
found=0
while read -r node key value; do
  case "$key" in
    spillway.io/fake-gpus) patch_capacity "$node" nvidia.com/gpu "$value" ;;
    spillway.io/fake-mig-*) patch_capacity "$node" "nvidia.com/mig-${key#spillway.io/fake-mig-}" "$value" ;;
    *) continue ;;
  esac
  found=1
done < <(kubectl "${ctx[@]}" get nodes -o go-template="$template")

if [[ "$found" == 0 ]]; then
  echo "fake-gpus: no node has a spillway.io/fake-gpus or spillway.io/fake-mig-* label" >&2
  exit 1
fi
