// What normalizing a request path (SPEC §12) costs per request: the common
// case, a path that is already normal, must stay far below the rest of the
// request's work (goal: under 50 ns for a typical 30-byte path).
#include <benchmark/benchmark.h>

#include <string_view>

#include "proxy/http/path_normalize.h"

namespace {

using sluice::http::normalizePath;
using sluice::http::PathBuffers;

void normalizeLoop(benchmark::State& state, std::string_view path) {
  PathBuffers buffers;  // one per connection, reused across its requests
  for (auto _ : state) {
    benchmark::DoNotOptimize(path);
    auto n = normalizePath(path, buffers);
    benchmark::DoNotOptimize(n);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * path.size()));
}

// 30 bytes, nothing to change: the views point into the input.
void BM_NormalizeTypical30BytePath(benchmark::State& state) {
  normalizeLoop(state, "/api/v1/users/12345/orders/678");
}
BENCHMARK(BM_NormalizeTypical30BytePath);

// Already normal, with upper-case escapes that stay: still no copy.
void BM_NormalizeAlreadyNormalWithEscapes(benchmark::State& state) {
  normalizeLoop(state, "/files/My%20Documents/Q3%20report%C3%A9.pdf");
}
BENCHMARK(BM_NormalizeAlreadyNormalWithEscapes);

// Already normal, but %2F: the forward view is the input, the route view is built.
void BM_NormalizeEncodedSlash(benchmark::State& state) {
  normalizeLoop(state, "/repos/acme%2Fwidgets/issues/42");
}
BENCHMARK(BM_NormalizeEncodedSlash);

// Dots, '//', lower-case and unreserved escapes: both views are built.
void BM_NormalizeDotsAndEncodings(benchmark::State& state) {
  normalizeLoop(state, "/api/./v1//users/%7Ejohn/../%61dmin/%2e%2E/x%2fy");
}
BENCHMARK(BM_NormalizeDotsAndEncodings);

}  // namespace
