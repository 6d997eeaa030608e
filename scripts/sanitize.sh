#!/usr/bin/env bash
# Runs the test suite under the sanitizers (g++ 12):
#   build-asan  -DSLUICE_SANITIZE=address,undefined  the whole ctest suite
#   build-tsan  -DSLUICE_SANITIZE=thread             the concurrency tests only
# Integration tests start the real sluice binary, which is built with the
# same sanitizer: its reports (a leak at exit included) count as failures.
# Every process writes its reports to a log directory (log_path), which is
# checked after ctest, so a report from a child process that a test did not
# look at still fails the run.
#
# Usage: scripts/sanitize.sh [asan|tsan]...   (default: both)
#   JOBS=N  compile and ctest jobs (default: nproc)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

jobs="${JOBS:-$(nproc)}"
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(asan tsan)

# Tests that exercise threads: the limiter's concurrency and reload tests,
# the shared upstream pool, and the integration tests that run a
# multi-worker proxy (pool across workers, reloads under traffic).
TSAN_TARGETS=(limiter_test upstream_test pool_test operations_test)
TSAN_TESTS='Concurrency|Reload|SharedPool|PoolTest'

# Tests that measure the proxy's RSS (see run_asan).
RSS_TESTS='^KeyFloodTest\.'

# check_reports DIR: fails when any process left a sanitizer report in DIR.
check_reports() {
  local dir="$1" found=0
  for f in "$dir"/*; do
    [ -s "$f" ] || continue
    found=1
    echo "---- sanitizer report: $f ----"
    head -n 80 "$f"
  done
  return "$found"
}

run_asan() {
  local build=build-asan logs
  logs="$(pwd)/$build/sanitizer-logs"
  echo "== ASan + UBSan: build ($build)"
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLUICE_SANITIZE=address,undefined \
    -DSLUICE_BUILD_BENCHMARKS=OFF >/dev/null
  cmake --build "$build" -j"$jobs"
  rm -rf "$logs"
  mkdir -p "$logs"
  echo "== ASan + UBSan: ctest"
  local rc=0 asan="detect_leaks=1:abort_on_error=0:log_path=$logs/asan"
  export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$logs/ubsan"
  ASAN_OPTIONS="$asan" ctest --test-dir "$build" --output-on-failure -j"$jobs" \
    -E "$RSS_TESTS" || rc=$?
  # These assert that RSS plateaus while keys are evicted; ASan's quarantine
  # of freed blocks (up to 256 MB) grows RSS by design, so they run without it
  # (leaks, overflows and UB are still caught).
  echo "== ASan + UBSan: ctest -R '$RSS_TESTS' without the quarantine"
  ASAN_OPTIONS="$asan:quarantine_size_mb=0" ctest --test-dir "$build" --output-on-failure \
    -j"$jobs" -R "$RSS_TESTS" || rc=$?
  unset UBSAN_OPTIONS
  check_reports "$logs" || rc=1
  return "$rc"
}

run_tsan() {
  local build=build-tsan logs
  logs="$(pwd)/$build/sanitizer-logs"
  echo "== TSan: build ($build: ${TSAN_TARGETS[*]})"
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLUICE_SANITIZE=thread \
    -DSLUICE_BUILD_BENCHMARKS=OFF >/dev/null
  cmake --build "$build" -j"$jobs" --target "${TSAN_TARGETS[@]}"
  rm -rf "$logs"
  mkdir -p "$logs"
  # TSan needs the address layout it was built for; kernels with more mmap
  # randomness than it expects abort at start ("unexpected memory mapping").
  # Without address randomization (setarch -R) it always works.
  local run=()
  if ! "$build/tests/limiter/limiter_test" --gtest_list_tests >/dev/null 2>"$logs/probe"; then
    if grep -q "unexpected memory mapping" "$logs/probe"; then
      run=(setarch "$(uname -m)" -R)
      echo "TSan: this kernel's mmap randomness needs setarch -R"
    fi
  fi
  rm -f "$logs/probe"
  echo "== TSan: ctest -R '$TSAN_TESTS'"
  local rc=0
  TSAN_OPTIONS="halt_on_error=0:second_deadlock_stack=1:log_path=$logs/tsan" \
    "${run[@]}" ctest --test-dir "$build" --output-on-failure -j"$jobs" -R "$TSAN_TESTS" || rc=$?
  check_reports "$logs" || rc=1
  return "$rc"
}

status=0
for step in "${steps[@]}"; do
  start=$SECONDS
  case "$step" in
    asan) run_asan || status=1 ;;
    tsan) run_tsan || status=1 ;;
    *) echo "usage: $0 [asan|tsan]..." >&2; exit 2 ;;
  esac
  echo "== $step: $((SECONDS - start))s"
done
if [ "$status" != 0 ]; then
  echo "sanitize: FAILED" >&2
  exit 1
fi
echo "sanitize: no sanitizer findings"
