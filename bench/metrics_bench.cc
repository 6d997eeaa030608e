// The hot-path cost of metrics: what one request pays to be counted, next to
// the same loop without metrics (same run, same binary).
#include <benchmark/benchmark.h>

#include <atomic>

#include "proxy/metrics/metrics.h"

namespace {

using sluice::metrics::Registry;

void BM_RequestWithoutMetrics(benchmark::State& state) {
  std::int64_t d = 1000;
  for (auto _ : state) {
    benchmark::DoNotOptimize(d += 7);
  }
}
BENCHMARK(BM_RequestWithoutMetrics);

// A proxied request records its route (status + duration histogram) and its
// upstream (status + time to head): two record() calls.
void BM_RequestWithMetrics(benchmark::State& state) {
  static Registry registry(2, "bench");
  auto* route = registry.route("api");
  auto* upstream = registry.upstream("demo");
  const int worker = state.thread_index() % 2;
  std::int64_t d = 1000;
  for (auto _ : state) {
    d += 7;
    route->record(worker, 200, d);
    upstream->record(worker, 200, d / 2);
    benchmark::DoNotOptimize(d);
  }
}
BENCHMARK(BM_RequestWithMetrics)->Threads(1)->Threads(2);

// For comparison: the same counting with a shared atomic counter, which is
// what a single prometheus-cpp Counter per label set would cost.
void BM_SharedAtomicCounter(benchmark::State& state) {
  static std::atomic<std::uint64_t> counter{0};
  for (auto _ : state) {
    counter.fetch_add(1, std::memory_order_relaxed);
    counter.fetch_add(1, std::memory_order_relaxed);
  }
}
BENCHMARK(BM_SharedAtomicCounter)->Threads(1)->Threads(2);

void BM_Scrape(benchmark::State& state) {
  Registry registry(2, "bench");
  for (int i = 0; i < 20; ++i) {
    auto* r = registry.route("route" + std::to_string(i));
    for (int code : {200, 404, 429, 502}) r->record(0, code, 1000);
  }
  sluice::metrics::ScrapeInput in;
  for (auto _ : state) {
    benchmark::DoNotOptimize(registry.render(in));
  }
}
BENCHMARK(BM_Scrape);

}  // namespace
