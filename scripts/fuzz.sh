#!/usr/bin/env bash
# Builds the libFuzzer targets under fuzz/ (clang-14, ASan + UBSan) in
# build-fuzz and runs each one for SECONDS (default 60) on a scratch copy of
# its seed corpus (fuzz/corpus/<target>/; the committed seeds are never
# modified). Fails on any crash, sanitizer report, leak, timeout or OOM, and
# prints the executions per target (libFuzzer's final "Done N runs" line).
#
# Usage: scripts/fuzz.sh [SECONDS]
#   FUZZ_TARGETS="request_parser_fuzz values_fuzz"  run a subset
#   FUZZ_JOBS=N       targets run at once (default: nproc)
#   FUZZ_BUILD_DIR=dir  build directory (default: build-fuzz)
#   BUILD_JOBS=N      compile jobs (default: nproc)
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
  echo "usage: $0 [SECONDS]" >&2
  exit 2
fi

bash scripts/setup.sh  # lists clang-14 and libclang-rt-14-dev

build="${FUZZ_BUILD_DIR:-build-fuzz}"
all_targets=(request_parser_fuzz response_parser_fuzz chunked_body_fuzz
             client_ip_fuzz values_fuzz config_loader_fuzz path_normalize_fuzz cert_name_fuzz)
read -r -a targets <<<"${FUZZ_TARGETS:-${all_targets[*]}}"
jobs="${FUZZ_JOBS:-$(nproc)}"

CC=clang-14 CXX=clang++-14 cmake -S . -B "$build" -DSLUICE_FUZZ=ON -DSLUICE_BUILD_TESTS=OFF \
  -DSLUICE_BUILD_BENCHMARKS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"${BUILD_JOBS:-$(nproc)}" --target "${targets[@]}"

dict_for() {
  case "$1" in
    request_parser_fuzz | response_parser_fuzz | chunked_body_fuzz) echo fuzz/http.dict ;;
    client_ip_fuzz) echo fuzz/addresses.dict ;;
    config_loader_fuzz) echo fuzz/config.dict ;;
    path_normalize_fuzz) echo fuzz/path.dict ;;
    *) echo "" ;;
  esac
}

work="$build/fuzz-runs"
rm -rf "$work"
mkdir -p "$work"
# The project libraries are built with recoverable UBSan: make any report fatal.
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0"

run_one() {
  local t="$1" dir="$work/$1"
  mkdir -p "$dir/corpus" "$dir/artifacts"
  cp -r "fuzz/corpus/$t/." "$dir/corpus/"
  local dict
  dict="$(dict_for "$t")"
  local args=(-max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -max_len=65536
              -print_final_stats=1 -artifact_prefix="$dir/artifacts/")
  [ -n "$dict" ] && args+=(-dict="$dict")
  set +e
  "$build/fuzz/$t" "${args[@]}" "$dir/corpus" >"$dir/log" 2>&1
  echo $? >"$dir/rc"
  set -e
}

echo "== fuzzing ${#targets[@]} targets for ${seconds}s each, $jobs at a time"
running=0
for t in "${targets[@]}"; do
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
done
wait

failed=0
printf '\n%-22s %12s %10s %8s  %s\n' target executions exec/s corpus result
for t in "${targets[@]}"; do
  dir="$work/$t"
  rc="$(cat "$dir/rc" 2>/dev/null || echo 1)"
  runs="$(sed -n 's/^Done \([0-9]*\) runs in.*/\1/p' "$dir/log" | tail -n 1)"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *\([0-9]*\).*/\1/p' "$dir/log" | tail -n 1)"
  corpus="$(find "$dir/corpus" -type f | wc -l)"
  result=ok
  if [ "$rc" != 0 ] || [ -z "$runs" ] || [ -n "$(ls -A "$dir/artifacts")" ]; then
    result="FAILED (exit $rc)"
    failed=1
  fi
  printf '%-22s %12s %10s %8s  %s\n' "$t" "${runs:-?}" "${rate:-?}" "$corpus" "$result"
done

if [ "$failed" != 0 ]; then
  for t in "${targets[@]}"; do
    dir="$work/$t"
    [ "$(cat "$dir/rc" 2>/dev/null || echo 1)" = 0 ] && [ -z "$(ls -A "$dir/artifacts")" ] && continue
    echo
    echo "---- $t: last lines of $dir/log ----"
    grep -v '^#[0-9]' "$dir/log" | tail -n 40
    for a in "$dir"/artifacts/*; do
      [ -e "$a" ] && echo "reproduce: $build/fuzz/$t $a"
    done
  done
  echo
  echo "fuzz: FAILED" >&2
  exit 1
fi
echo
echo "fuzz: all targets ran ${seconds}s without a finding"
