#!/usr/bin/env bash
# scripts/deps.sh: installs the Debian packages kiln builds with, when they are missing
# (apt-get, as root). Sourced by scripts/train.sh and scripts/test.sh. libdnnl-dev (oneDNN 2.x):
# the CPU backend's convolutions and GEMM (optional at build time: KILN_DNNL=AUTO). openmpi-bin and
# libopenmpi-dev: data-parallel training (KILN_MPI, docs/distributed.md), optional at build time.
kiln_install_deps() {
  local need="cmake ninja-build pkg-config gcc g++ binutils python3 libopenblas-dev libcjson-dev zlib1g-dev libcriterion-dev libdnnl-dev openmpi-bin libopenmpi-dev $*"
  need="$need libhdf5-dev libzip-dev" # Keras 3 files: .weights.h5 (HDF5), .keras (zip); optional at build time, docs/formats.md
  local missing="" p
  for p in $need; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  [ -z "$missing" ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing:$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
  else
    echo "missing packages:$missing (install them, or run as root to have this script do it)" >&2
    return 1
  fi
}
