#!/usr/bin/env bash
# Checks the Helm chart (helm/sluice) without helm and without a cluster.
#
#   scripts/chart-check.sh [SLUICE_BINARY]     (default: build/proxy/sluice)
#
# helm is not packaged for Debian 12, so the chart is rendered by our own
# renderer (helm/tools/render, Go text/template + sprig, built here in GOPATH
# mode from Debian packages) and validated offline:
#   - values.yaml, ci/full-values.yaml and README's example values against
#     values.schema.json, which must allow every key of README's
#     configuration reference;
#   - each render with yamllint (helm/tools/yamllint.yaml);
#   - every rendered object against its Kubernetes / prometheus-operator model
#     (npm kubernetes-models, pinned by helm/tools/validate/package-lock.json),
#     fields the API does not declare, and the wiring between objects;
#   - the rendered sluice.yaml with `sluice --check-config` (with TLS on, on
#     a copy whose certificate paths point at test certificates made here by
#     the openssl CLI);
#   - TLS from a Secret (ci/tls-values.yaml, ci/full-values.yaml): the config
#     names the mounted files, the Secret is mounted read-only without subPath,
#     the https container and Service ports, the probes on the admin port;
#   - the checksum/config annotation: it hashes the mounted file, changes
#     when a limit's rate changes, not when only other values change;
#   - render-time and schema errors for common mistakes;
#   - the Dockerfile's runtime packages against the binary's libraries.
# Installs what it needs (apt, npm) on Debian 12 as root. Exit 0 only if
# every check passed.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
chart="$root/helm/sluice"
tools="$root/helm/tools"
sluice=${1:-$root/build/proxy/sluice}
started=$SECONDS

if [ ! -x "$sluice" ]; then
  echo "chart-check: no sluice binary at $sluice" >&2
  echo "  build one (README), e.g. cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build --target sluice," >&2
  echo "  or pass its path: $0 path/to/sluice" >&2
  exit 2
fi
sluice=$(cd "$(dirname "$sluice")" && pwd)/$(basename "$sluice")

# --- dependencies -----------------------------------------------------------
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
apt_pkgs=(golang-go golang-github-masterminds-sprig-dev golang-k8s-sigs-yaml-dev yamllint)
command -v node >/dev/null || apt_pkgs+=(nodejs)
command -v openssl >/dev/null || apt_pkgs+=(openssl)
command -v npm >/dev/null || apt_pkgs+=(npm)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "chart-check: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >/dev/null
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm ci only when the lock file changed since the last install.
validate_dir="$tools/validate"
lock_sum=$(sha256sum "$validate_dir/package-lock.json" | cut -d' ' -f1)
stamp="$validate_dir/node_modules/.chart-check-lock.sha256"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_sum" ]; then
  echo "chart-check: npm ci in helm/tools/validate" >&2
  (cd "$validate_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$lock_sum" >"$stamp"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Build the renderer: GOPATH mode against Debian's Go sources, no network.
(cd "$tools/render" &&
  GO111MODULE=off GOPATH="$work/gopath:/usr/share/gocode" GOCACHE="$work/gocache" \
    GOFLAGS='' GOPROXY=off go build -o "$work/render" .)
render() { "$work/render" --name sluice --namespace default "$@" "$chart"; }
validate() { node "$validate_dir/validate.js" "$@"; }

# Test certificates for configs with TLS on, laid out like the chart's mounts
# (/etc/sluice/tls/tls.{crt,key}, /etc/sluice/client-ca/ca.crt) under $certs.
certs="$work/certs"
mkdir -p "$certs/tls" "$certs/client-ca"
make_certs() {
  local ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2)
  openssl req -x509 "${ec[@]}" -subj /CN=sluice.test -addext subjectAltName=DNS:sluice.test \
    -keyout "$certs/tls/tls.key" -out "$certs/tls/tls.crt" &&
    openssl req -x509 "${ec[@]}" -subj "/CN=sluice test client CA" -addext basicConstraints=critical,CA:true \
      -keyout "$certs/client-ca/ca.key" -out "$certs/client-ca/ca.crt" &&
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$certs/other.key"
}
certs_err=$(make_certs 2>&1) || { echo "chart-check: openssl could not make test certificates:" >&2; echo "$certs_err" >&2; exit 1; }
# with_test_certs IN OUT: IN with the chart's TLS paths moved under $certs.
with_test_certs() {
  sed -e "s#: /etc/sluice/tls/#: $certs/tls/#" -e "s#: /etc/sluice/client-ca/#: $certs/client-ca/#" "$1" >"$2"
}

# --- checks -----------------------------------------------------------------
passed=0
failed=0
ok() { passed=$((passed + 1)); printf 'ok    %s\n' "$1"; }
bad() {
  failed=$((failed + 1))
  printf 'FAIL  %s\n' "$1"
  [ -n "${2:-}" ] && printf '%s\n' "$2" | sed 's/^/      /' | head -40
  return 0
}
# check DESCRIPTION COMMAND...: passes when COMMAND exits 0.
check() {
  local desc=$1 out
  shift
  if out=$("$@" 2>&1); then ok "$desc"; else bad "$desc" "$out"; fi
}
# check_fails DESCRIPTION EXPECTED_TEXT COMMAND...: passes when COMMAND fails
# and says EXPECTED_TEXT (so it failed for the intended reason).
check_fails() {
  local desc=$1 want=$2 out
  shift 2
  if out=$("$@" 2>&1); then
    bad "$desc" "succeeded, expected a failure mentioning: $want"
  elif grep -qF -- "$want" <<<"$out"; then
    ok "$desc"
  else
    bad "$desc" "failed without mentioning \"$want\":"$'\n'"$out"
  fi
}

check "yamllint: Chart.yaml, values.yaml, ci/*.yaml" \
  yamllint --strict -c "$tools/yamllint.yaml" "$chart/Chart.yaml" "$chart/values.yaml" "$chart"/ci/*.yaml
check "dashboards/sluice.json is JSON" node -e 'JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))' \
  "$chart/dashboards/sluice.json"

check "values.schema.json allows every key of README's configuration reference" \
  validate schema-covers "$chart/values.schema.json" "$root/README.md"

# render_case NAME [VALUES_FILE]: the checks every values set gets.
render_case() {
  local name=$1 dir="$work/$1"
  local args=()
  [ -n "${2:-}" ] && args=(-f "$2")
  mkdir -p "$dir"
  if ! render "${args[@]}" --print-values >"$dir/values.json" 2>"$dir/err" ||
    ! render "${args[@]}" --notes >"$dir/rendered.yaml" 2>"$dir/notes.txt" ||
    ! render "${args[@]}" -o json >"$dir/rendered.json" 2>>"$dir/err"; then
    bad "$name: render" "$(cat "$dir/err" "$dir/notes.txt")"
    return
  fi
  ok "$name: render ($(grep -c '^# Source:' "$dir/rendered.yaml") objects, NOTES.txt)"
  check "$name: values.schema.json" validate values "$chart/values.schema.json" "$dir/values.json"
  check "$name: yamllint" yamllint --strict -c "$tools/yamllint.yaml" "$dir/rendered.yaml"
  check "$name: Kubernetes models, undeclared fields, wiring" validate manifests "$dir/rendered.json"
  if validate get "$dir/rendered.json" ConfigMap sluice /data/sluice.yaml >"$dir/sluice.yaml" 2>"$dir/err"; then
    if grep -q '^tls:' "$dir/sluice.yaml"; then
      with_test_certs "$dir/sluice.yaml" "$dir/sluice.check.yaml"
      check "$name: sluice --check-config on the rendered sluice.yaml (TLS files: openssl test certificates)" \
        "$sluice" --check-config "$dir/sluice.check.yaml"
    else
      check "$name: sluice --check-config on the rendered sluice.yaml" "$sluice" --check-config "$dir/sluice.yaml"
    fi
    local want have
    want=$(printf '%s' "$(cat "$dir/sluice.yaml")" | sha256sum | cut -d' ' -f1)
    have=$(validate get "$dir/rendered.json" Deployment sluice '/spec/template/metadata/annotations/checksum~1config') ||
      have="(none)"
    if [ "$want" = "$have" ]; then ok "$name: checksum/config is the sha256 of the mounted sluice.yaml"; else
      bad "$name: checksum/config is the sha256 of the mounted sluice.yaml" "annotation $have, file $want"
    fi
  else
    bad "$name: extract sluice.yaml from the ConfigMap" "$(cat "$dir/err")"
  fi
}

render_case default
render_case full "$chart/ci/full-values.yaml"
render_case tls "$chart/ci/tls-values.yaml"
# The example in README.md ("Deploy with Helm") must keep working.
awk '/A `my-values.yaml`:/{f=1; next} f && /^```yaml/{g=1; next} g && /^```/{exit} g' \
  "$root/README.md" >"$work/readme-values.yaml"
if [ -s "$work/readme-values.yaml" ]; then
  render_case readme "$work/readme-values.yaml"
else
  bad "readme: find the my-values.yaml example in README.md"
fi
if grep -q "RATE LIMITS ARE PER REPLICA" "$work/default/notes.txt"; then ok "default: NOTES.txt warns that limits are per replica"; else
  bad "default: NOTES.txt warns that limits are per replica" "$(cat "$work/default/notes.txt")"
fi
if grep -q "^# Source: sluice/templates/servicemonitor.yaml" "$work/full/rendered.yaml" &&
  grep -q "^# Source: sluice/templates/hpa.yaml" "$work/full/rendered.yaml" &&
  grep -q "^# Source: sluice/templates/dashboard.yaml" "$work/full/rendered.yaml"; then
  ok "full: ServiceMonitor, HPA and dashboard rendered"
else
  bad "full: ServiceMonitor, HPA and dashboard rendered"
fi
no_operator() {
  local out
  out=$(render -f "$chart/ci/full-values.yaml" --api-versions v1,apps/v1,autoscaling/v2,policy/v1) || return 1
  ! grep -q "servicemonitor.yaml" <<<"$out"
}
check "full: no ServiceMonitor when the cluster lacks monitoring.coreos.com/v1" no_operator

# TLS from a Secret. has_lines FILE LINE...: FILE has every LINE exactly.
has_lines() {
  local file=$1 line
  shift
  for line in "$@"; do grep -qxF -- "$line" "$file" || { echo "no line \"$line\" in:" && cat "$file" && return 1; }; done
}
check "tls: sluice.yaml listens for TLS on 0.0.0.0:8443 with the mounted certificate and key" \
  has_lines "$work/tls/sluice.yaml" "  tls_listen: 0.0.0.0:8443" "tls:" "  certificates:" \
  "  - cert: /etc/sluice/tls/tls.crt" "    key: /etc/sluice/tls/tls.key"
check "tls: Secret read-only at /etc/sluice/tls (no subPath), https container and Service ports, probes on admin" \
  validate tls "$work/tls/rendered.json" sluice-tls 8443
check "full: TLS on 9443 with min_version 1.3 and client_ca (mTLS) in sluice.yaml" \
  has_lines "$work/full/sluice.yaml" "  tls_listen: 0.0.0.0:9443" "  - cert: /etc/sluice/tls/tls.crt" \
  "    key: /etc/sluice/tls/tls.key" "  client_ca: /etc/sluice/client-ca/ca.crt" '  min_version: "1.3"'
check "full: both Secrets read-only (client CA bundle.pem as ca.crt), https ports, probes on admin" \
  validate tls "$work/full/rendered.json" edge-example-com-tls 9443 partner-clients-ca:bundle.pem
no_tls() {
  ! grep -nE 'tls|https|8443' "$work/default/sluice.yaml" "$work/default/rendered.yaml"
}
check "default: TLS off renders no TLS listener, port, volume or Service port" no_tls
# The check-config step above really reads the TLS files: a key of another
# certificate fails it.
sed -e "s#$certs/tls/tls.key#$certs/other.key#" "$work/tls/sluice.check.yaml" >"$work/tls/mismatch.yaml"
check_fails "tls: sluice --check-config rejects a key that does not match the certificate" \
  "does not match the certificate" "$sluice" --check-config "$work/tls/mismatch.yaml"

# The config checksum: a limit's rate changes it, nothing else does.
checksum() {
  render "$@" -o json >"$work/c.json" &&
    validate get "$work/c.json" Deployment sluice '/spec/template/metadata/annotations/checksum~1config'
}
printf 'config:\n  limits:\n    per_ip:\n      rate: 21/s\n' >"$work/rate.yaml"
printf 'replicaCount: 5\nlogLevel: debug\n' >"$work/replicas.yaml"
if base=$(checksum) && again=$(checksum) && rate=$(checksum -f "$work/rate.yaml") &&
  other=$(checksum -f "$work/replicas.yaml"); then
  if [ "$base" = "$again" ]; then ok "checksum/config is stable across renders"; else bad "checksum/config is stable across renders" "$base vs $again"; fi
  if [ "$base" != "$rate" ]; then ok "checksum/config changes when a limit's rate changes (20/s -> 21/s)"; else
    bad "checksum/config changes when a limit's rate changes (20/s -> 21/s)" "both $base"
  fi
  if [ "$base" = "$other" ]; then ok "checksum/config ignores changes outside config"; else
    bad "checksum/config ignores changes outside config" "$base vs $other"
  fi
else
  bad "checksum/config renders"
fi
# TLS: switching it on changes sluice.yaml, so the checksum. A Secret's
# contents are not part of it (rotation: helm/sluice/README.md); renaming the
# Secret changes the pod's volumes, which rolls the pods without it.
printf 'tls:\n  secretName: other-tls\n' >"$work/tls-other.yaml"
if base=$(checksum) && tls=$(checksum -f "$chart/ci/tls-values.yaml") &&
  renamed=$(checksum -f "$chart/ci/tls-values.yaml" -f "$work/tls-other.yaml") &&
  vols=$(validate get "$work/c.json" Deployment sluice /spec/template/spec/volumes); then
  if [ "$base" != "$tls" ]; then ok "checksum/config changes when tls.enabled turns on"; else
    bad "checksum/config changes when tls.enabled turns on" "both $base"
  fi
  if [ "$tls" = "$renamed" ] && grep -q '"secretName":"other-tls"' <<<"$vols"; then
    ok "tls.secretName changes the pod's volumes, not checksum/config"
  else
    bad "tls.secretName changes the pod's volumes, not checksum/config" "checksum $tls vs $renamed; volumes $vols"
  fi
else
  bad "checksum/config renders with TLS"
fi

# Mistakes users make are caught before anything reaches a cluster.
printf 'config:\n  limits:\n    per_ip:\n      burts: 40\n' >"$work/typo.yaml"
render -f "$work/typo.yaml" --print-values >"$work/typo.json" || true
check_fails "schema rejects a misspelt config key (burts)" "must NOT have additional properties: burts" \
  validate values "$chart/values.schema.json" "$work/typo.json"
printf 'config:\n  limits:\n    per_ip:\n      rate: 20/sec\n' >"$work/rate-unit.yaml"
render -f "$work/rate-unit.yaml" --print-values >"$work/rate-unit.json" || true
check_fails "schema rejects a rate with an unknown unit (20/sec)" "must match pattern" \
  validate values "$chart/values.schema.json" "$work/rate-unit.json"
printf 'config:\n  server:\n    listen: 127.0.0.1:8080\n' >"$work/loopback.yaml"
check_fails "render fails on a loopback listen address" "loopback address" render -f "$work/loopback.yaml"
printf 'config:\n  limits:\n    per_ip:\n      store: redis\n' >"$work/redis.yaml"
check_fails "render fails on store: redis without config.redis" "config.redis is not set" render -f "$work/redis.yaml"
cat >"$work/own-upstream.yaml" <<'EOF'
config:
  upstreams:
    api:
      targets: [api.prod.svc:8080]
  routes:
    - path_prefix: /
      upstream: api
      limits: [per_ip]
EOF
check_fails "render fails on an upstream no route uses (the default kept by merging)" \
  "config.upstreams.backend is not used by any route" render -f "$work/own-upstream.yaml"
printf 'config:\n  upstreams:\n    backend: null\n' >"$work/drop-backend.yaml"
own_upstream() {
  render -f "$work/own-upstream.yaml" -f "$work/drop-backend.yaml" -o json >"$work/own.json" &&
    validate get "$work/own.json" ConfigMap sluice /data/sluice.yaml >"$work/own.yaml" &&
    ! grep -q my-service "$work/own.yaml" && "$sluice" --check-config "$work/own.yaml"
}
check "an own upstream replaces the default with backend: null" own_upstream
printf 'terminationGracePeriodSeconds: 10\n' >"$work/grace.yaml"
check_fails "render fails when terminationGracePeriodSeconds < preStop + shutdown_grace" "needs 30" \
  render -f "$work/grace.yaml"
printf 'tls:\n  enabled: true\n' >"$work/tls-nosecret.yaml"
check_fails "render fails on tls.enabled without tls.secretName" "tls.secretName is not set" \
  render -f "$work/tls-nosecret.yaml"
render -f "$work/tls-nosecret.yaml" --print-values >"$work/tls-nosecret.json" || true
check_fails "schema rejects tls.enabled without tls.secretName" "values/tls/secretName: must NOT have fewer than 1 characters" \
  validate values "$chart/values.schema.json" "$work/tls-nosecret.json"
printf 'tls:\n  port: 8080\n' >"$work/tls-port.yaml"
check_fails "render fails on a tls.port that is the listen port" "tls.port 8080 is also the port of config.server.listen" \
  render -f "$chart/ci/tls-values.yaml" -f "$work/tls-port.yaml"
printf 'tls:\n  servicePort: 80\n' >"$work/tls-svc.yaml"
check_fails "render fails on a tls.servicePort equal to service.port" "tls.servicePort and service.port are both 80" \
  render -f "$chart/ci/tls-values.yaml" -f "$work/tls-svc.yaml"
printf 'config:\n  tls:\n    min_version: "1.3"\n' >"$work/own-tls.yaml"
check_fails "render fails on config.tls with tls.enabled (the chart writes it from tls.*)" \
  "config.tls is set by the chart when tls.enabled" render -f "$chart/ci/tls-values.yaml" -f "$work/own-tls.yaml"
printf 'tls:\n  minVersion: 1.3\n' >"$work/tls-float.yaml"
render -f "$chart/ci/tls-values.yaml" -f "$work/tls-float.yaml" --print-values >"$work/tls-float.json" || true
check_fails "schema rejects an unquoted tls.minVersion (1.3, a number)" "must be equal to one of the allowed values" \
  validate values "$chart/values.schema.json" "$work/tls-float.json"

# The image: the runtime stage installs the package of every shared library
# the binary needs, beyond the base image's libc6, libstdc++6, libgcc-s1.
image_libs() {
  local need=() p
  for lib in $(ldd "$sluice" | awk '/=> \//{print $3}'); do
    p=$(dpkg -S "$(readlink -f "$lib")" 2>/dev/null | head -1 | cut -d: -f1) || true
    [ -z "$p" ] && p=$(dpkg -S "$lib" 2>/dev/null | head -1 | cut -d: -f1)
    case "$p" in libc6 | libstdc++6 | libgcc-s1) ;; "") echo "no package owns $lib" && return 1 ;; *) need+=("$p") ;; esac
  done
  local runtime
  runtime=$(awk '/^FROM .* AS build/{b=1} /^FROM/ && !/AS build/{b=0} !b' "$root/Dockerfile")
  for p in $(printf '%s\n' "${need[@]}" | sort -u); do
    grep -qw -- "$p" <<<"$runtime" || { echo "runtime stage lacks $p"; return 1; }
  done
}
check "Dockerfile runtime stage installs the binary's libraries" image_libs

elapsed=$((SECONDS - started))
echo
if [ "$failed" -eq 0 ]; then
  echo "chart-check: all $passed checks passed (${elapsed}s)"
else
  echo "chart-check: $failed of $((passed + failed)) checks FAILED (${elapsed}s)"
  exit 1
fi
