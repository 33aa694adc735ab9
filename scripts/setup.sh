#!/usr/bin/env bash
# Installs what qkit needs on Debian 12 (as root or through sudo): the C libraries qkit links
# (OpenBLAS, zlib, json-c) and the small tools the scripts use. Idempotent and quick when done before.
set -euo pipefail
need=(libopenblas-dev zlib1g-dev libjson-c-dev pkg-config unzip)
missing=()
for p in "${need[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  SUDO=; [[ $(id -u) == 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v swift >/dev/null || { echo "setup: swift is not on PATH (Swift 6.x toolchain needed)" >&2; exit 69; }
