#!/usr/bin/env bash
# Installs every Debian package sluice needs to build, test and benchmark.
# Idempotent and quiet when everything is present. Used by README, .ci/run
# and the container image. Run as root on Debian 12 (bookworm).
set -euo pipefail

# Build and runtime libraries.
BUILD_PKGS=(
  build-essential cmake pkg-config git ca-certificates
  libevent-dev libyaml-cpp-dev prometheus-cpp-dev node-llhttp libhiredis-dev libssl-dev
)
# Tests, benchmarks, fuzzing and tools used by the test suite.
TEST_PKGS=(
  libgtest-dev libgmock-dev libbenchmark-dev
  clang-14 libclang-rt-14-dev
  curl python3 procps redis-server iptables iproute2 openssl testssl.sh python3-websockets
)

# Load testing against peers (loadtest/): not needed to build or test.
BENCH_PKGS=(
  wrk nginx-light haproxy gnuplot-nox strace
)

profile="${1:-all}"
case "$profile" in
  build) pkgs=("${BUILD_PKGS[@]}") ;;
  all) pkgs=("${BUILD_PKGS[@]}" "${TEST_PKGS[@]}") ;;
  bench) pkgs=("${BUILD_PKGS[@]}" "${TEST_PKGS[@]}" "${BENCH_PKGS[@]}") ;;
  *) echo "usage: $0 [build|all|bench]" >&2; exit 2 ;;
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
# Packages such as nginx and haproxy would start system services on install;
# loadtest/ runs its own instances, so keep the services from starting.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod +x "$policy"
  created_policy=1
fi
trap '[ "$created_policy" = 1 ] && $SUDO rm -f "$policy"' EXIT
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
