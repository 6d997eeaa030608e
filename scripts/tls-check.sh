#!/usr/bin/env bash
# testssl.sh against sluice's TLS listener (SPEC §9): no protocol below TLS
# 1.2, no weak cipher category, no vulnerability flagged. Generates an ECDSA
# P-256 certificate, starts the demo upstream and sluice on loopback ports,
# runs testssl (protocols, cipher categories, vulnerabilities; about 30 s),
# stops what it started and prints one summary line.
#
# Usage: scripts/tls-check.sh BUILD_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build}"
command -v testssl >/dev/null || { echo "tls-check: testssl missing (scripts/setup.sh)" >&2; exit 1; }

tmp="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "tls-check: nothing listens on $1" >&2
  return 1
}

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -keyout "$tmp/key.pem" -out "$tmp/cert.pem" -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
up_port="$(free_port)"; port="$(free_port)"; tls_port="$(free_port)"; admin_port="$(free_port)"
cat >"$tmp/sluice.yaml" <<YAML
server:
  listen: 127.0.0.1:$port
  tls_listen: 127.0.0.1:$tls_port
  admin_listen: 127.0.0.1:$admin_port
  workers: 1
  access_log: ""
tls:
  certificates:
    - {cert: $tmp/cert.pem, key: $tmp/key.pem}
upstreams:
  demo: {targets: [127.0.0.1:$up_port]}
routes:
  - {path_prefix: /, upstream: demo}
YAML
"$build/loadtest/upstream/sluice-demo-upstream" --listen "127.0.0.1:$up_port" >/dev/null 2>&1 &
pids+=($!)
"$build/proxy/sluice" --config "$tmp/sluice.yaml" --log-level warn &
pids+=($!)
wait_port "$up_port"
wait_port "$tls_port"

timeout 300 testssl --quiet --color 0 --warnings off --protocols --std --vulnerable \
  --jsonfile-pretty "$tmp/testssl.json" "127.0.0.1:$tls_port" >"$tmp/testssl.txt" 2>&1 || true
python3 - "$tmp/testssl.json" <<'PY'
import json, sys
scan = json.load(open(sys.argv[1]))["scanResult"][0]
bad = []
for section in ("protocols", "ciphers", "vulnerabilities"):
    for f in scan.get(section, []):
        if f["severity"] in ("LOW", "MEDIUM", "HIGH", "CRITICAL", "WARN", "FATAL"):
            bad.append(f'{f["id"]}: {f["severity"]}: {f["finding"]}')
offered = {f["id"]: f["finding"] for f in scan.get("protocols", [])}
for p in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
    if not offered.get(p, "").startswith("not offered"):
        bad.append(f"{p} is {offered.get(p, 'not tested')}")
checked = sum(len(scan.get(s, [])) for s in ("protocols", "ciphers", "vulnerabilities"))
if bad or checked == 0:
    print("tls-check: testssl flagged:" if bad else "tls-check: testssl reported nothing")
    for b in bad:
        print("  " + b)
    sys.exit(1)
print(f"tls-check: testssl {checked} checks: protocols TLS 1.2 and 1.3 only, "
      "no weak cipher category, no vulnerability flagged")
PY
