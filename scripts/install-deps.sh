#!/usr/bin/env bash
# Installs the system libraries MoEKit links (LMDB, OpenBLAS) when they are missing.
# Needs root (or sudo) the first time; does nothing when they are already there.
set -euo pipefail
missing=()
for pkg in liblmdb-dev libopenblas-dev pkg-config; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
