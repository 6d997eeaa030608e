#!/usr/bin/env bash
# Runs sluice with config/sluice.yaml in front of the demo upstream on
# 127.0.0.1:9001. Ctrl-C stops both. Expects a build in ./build (README).
set -euo pipefail
cd "$(dirname "$0")/.."
build="${BUILD_DIR:-build}"
"$build/loadtest/upstream/sluice-demo-upstream" --listen 127.0.0.1:9001 >/dev/null &
upstream_pid=$!
trap 'kill "$upstream_pid" 2>/dev/null || true' EXIT
echo "demo upstream on 127.0.0.1:9001 (pid $upstream_pid)"
echo "try:  curl -i http://127.0.0.1:8080/api/hello     (metrics: curl http://127.0.0.1:9901/metrics)"
"$build/proxy/sluice" --config config/sluice.yaml
