#!/usr/bin/env bash
# Installs every Debian package sluice needs to build, test and benchmark.
# Idempotent and quiet when everything is present. Used by README, .ci/run
# and the container image. Run as root on Debian 12 (bookworm).
set -euo pipefail

# Build and runtime libraries.
BUILD_PKGS=(
  build-essential cmake pkg-config git ca-certificates
  libevent-dev libyaml-cpp-dev prometheus-cpp-dev node-llhttp
)
# Tests, benchmarks, fuzzing and tools used by the test suite.
TEST_PKGS=(
  libgtest-dev libgmock-dev libbenchmark-dev
  clang-14 libclang-rt-14-dev
  curl python3 procps
)

profile="${1:-all}"
case "$profile" in
  build) pkgs=("${BUILD_PKGS[@]}") ;;
  all) pkgs=("${BUILD_PKGS[@]}" "${TEST_PKGS[@]}") ;;
  *) echo "usage: $0 [build|all]" >&2; exit 2 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "setup: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
