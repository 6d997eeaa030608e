#!/usr/bin/env bash
# Scrapes a live sluice's /metrics after some traffic (200s, 404s, 429s) and
# checks the exposition with promtool (Debian's prometheus package).
# Usage: scripts/metrics-check.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build}"
if ! command -v promtool >/dev/null; then
  # The package would start a Prometheus service; keep it from starting.
  policy=/usr/sbin/policy-rc.d
  made=0
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; made=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  [ "$made" = 1 ] && rm -f "$policy"
fi
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

"$build/loadtest/upstream/sluice-demo-upstream" --listen 127.0.0.1:0 > "$tmp/up.out" &
pids+=($!)
for _ in $(seq 100); do grep -q listening "$tmp/up.out" && break; sleep 0.05; done
up=$(sed -n 's/^listening //p' "$tmp/up.out")
cat > "$tmp/sluice.yaml" <<YAML
server: { listen: 127.0.0.1:0, admin_listen: 127.0.0.1:0, workers: 2 }
upstreams: { demo: { targets: [$up] } }
limits: { per_ip: { per: ip, rate: 1/m, burst: 3 } }
routes:
  - { name: api, path_prefix: /api/, upstream: demo, limits: [per_ip] }
YAML
"$build/proxy/sluice" --config "$tmp/sluice.yaml" 2> "$tmp/sluice.err" &
pids+=($!)
for _ in $(seq 100); do grep -q 'listener=admin' "$tmp/sluice.err" && break; sleep 0.05; done
port=$(sed -n 's/.*listener=proxy addr=[^ ]*:\([0-9]*\).*/\1/p' "$tmp/sluice.err" | head -1)
admin=$(sed -n 's/.*listener=admin addr=[^ ]*:\([0-9]*\).*/\1/p' "$tmp/sluice.err" | head -1)
for _ in $(seq 6); do curl -s -o /dev/null "http://127.0.0.1:$port/api/x"; done
curl -s -o /dev/null "http://127.0.0.1:$port/nowhere"
curl -s "http://127.0.0.1:$admin/metrics" > "$tmp/scrape.txt"
promtool check metrics < "$tmp/scrape.txt"
grep -q 'sluice_requests_total{route="api",code="429"} 3' "$tmp/scrape.txt"
grep -q 'sluice_requests_total{route="unmatched",code="404"} 1' "$tmp/scrape.txt"
echo "metrics-check: promtool accepts the scrape ($(grep -c '^sluice_' "$tmp/scrape.txt") samples)"
