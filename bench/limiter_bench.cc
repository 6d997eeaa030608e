// Decision cost of the limiter (SPEC §3 step 4) and memory per tracked key.
// Targets: <= 50 ns per hot-key decision on one thread, <= 96 bytes per key,
// no sweep slice over 1 ms.

#include <benchmark/benchmark.h>
#include <malloc.h>

#include <array>
#include <cstdint>
#include <memory>

#include "proxy/client/key_hash.h"
#include "proxy/config/config.h"
#include "proxy/limiter/decide.h"
#include "proxy/limiter/limit.h"

namespace sluice::limiter {
namespace {

constexpr Nanos kStart = Nanos{1000} * kNanosPerSecond;
constexpr int kManyKeys = 1 << 20;  // 1,048,576 tracked keys

config::LimitConfig limitConfig(config::LimitScope per, double rate, double burst) {
  config::LimitConfig c;
  c.name = "bench";
  c.per = per;
  c.rate = {rate, 1};
  c.burst = burst;
  return c;
}

client::KeyHash ipKey(std::uint32_t n) {
  client::IpAddr ip{};
  ip[10] = 0xff;
  ip[11] = 0xff;
  ip[12] = static_cast<std::uint8_t>(n >> 24);
  ip[13] = static_cast<std::uint8_t>(n >> 16);
  ip[14] = static_cast<std::uint8_t>(n >> 8);
  ip[15] = static_cast<std::uint8_t>(n);
  return client::hashIpKey(ip);
}

// Simulated time: each thread advances its own clock 1 us per request, so the
// buckets (1M/s) mostly admit and every decision writes.
Nanos threadStart(const benchmark::State& state) {
  return kStart + static_cast<Nanos>(state.thread_index()) * 7;
}

// Bytes malloc has handed out, including blocks served by mmap (large vectors).
std::size_t heapInUse() {
  const struct mallinfo2 info = mallinfo2();
  return info.uordblks + info.hblkhd;
}

void BM_GlobalDecision(benchmark::State& state) {
  static const auto limit = Limit::create(limitConfig(config::LimitScope::kGlobal, 1e6, 1000), 1);
  Probe probe(limit.get());
  Nanos now = threadStart(state);
  for (auto _ : state) {
    benchmark::DoNotOptimize(decide({&probe, 1}, now));
    now += 1000;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_GlobalDecision)->Threads(1)->Threads(2)->UseRealTime();

void BM_HotKeyDecision(benchmark::State& state) {
  static const auto limit = Limit::create(limitConfig(config::LimitScope::kIp, 1e6, 1000), 1000);
  Probe probe(limit.get(), ipKey(42));
  Nanos now = threadStart(state);
  for (auto _ : state) {
    benchmark::DoNotOptimize(decide({&probe, 1}, now));
    now += 1000;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_HotKeyDecision)->Threads(1)->Threads(2)->UseRealTime();

// Each thread its own hot key (different shards): no lock sharing.
void BM_HotKeyPerThreadDecision(benchmark::State& state) {
  static const auto limit = Limit::create(limitConfig(config::LimitScope::kIp, 1e6, 1000), 1000);
  Probe probe(limit.get(), ipKey(1000 + static_cast<std::uint32_t>(state.thread_index())));
  Nanos now = threadStart(state);
  for (auto _ : state) {
    benchmark::DoNotOptimize(decide({&probe, 1}, now));
    now += 1000;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_HotKeyPerThreadDecision)->Threads(1)->Threads(2)->UseRealTime();

// A typical route: global + per-IP + per-API-key.
void BM_ThreeLimitsDecision(benchmark::State& state) {
  static const auto global = Limit::create(limitConfig(config::LimitScope::kGlobal, 1e6, 1000), 1);
  static const auto per_ip = Limit::create(limitConfig(config::LimitScope::kIp, 1e6, 1000), 1000);
  static const auto per_key =
      Limit::create(limitConfig(config::LimitScope::kApiKey, 1e6, 1000), 1000);
  std::array<Probe, 3> probes{Probe(global.get()), Probe(per_ip.get(), ipKey(7)),
                              Probe(per_key.get(), client::hashApiKey("partner-123"))};
  Nanos now = threadStart(state);
  for (auto _ : state) {
    benchmark::DoNotOptimize(decide(probes, now));
    now += 1000;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ThreeLimitsDecision)->Threads(1)->Threads(2)->UseRealTime();

struct ManyKeys {
  std::shared_ptr<Limit> limit;
  double bytes_per_key_heap = 0;   // malloc'd bytes while inserting / keys
  double bytes_per_key_table = 0;  // table allocation / keys
};

const ManyKeys& manyKeys() {
  static const ManyKeys many = [] {
    ManyKeys m;
    const std::size_t before = heapInUse();
    m.limit = Limit::create(limitConfig(config::LimitScope::kIp, 1, 10), kManyKeys);
    for (std::uint32_t i = 0; i < kManyKeys; ++i) {
      Probe probe(m.limit.get(), ipKey(i));
      decide({&probe, 1}, kStart);
    }
    const LimitStats stats = m.limit->stats();
    m.bytes_per_key_heap =
        static_cast<double>(heapInUse() - before) / static_cast<double>(stats.keys);
    m.bytes_per_key_table =
        static_cast<double>(stats.memory_bytes) / static_cast<double>(stats.keys);
    return m;
  }();
  return many;
}

// Random keys over a table of 1M tracked keys (mostly cache misses). Includes
// hashing the IP key (about 5 ns), as every request pays it.
void BM_RandomKeyDecision(benchmark::State& state) {
  const ManyKeys& many = manyKeys();
  std::uint64_t x = 0x9e3779b97f4a7c15ULL * static_cast<std::uint64_t>(state.thread_index() + 1);
  Nanos now = threadStart(state);
  for (auto _ : state) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    Probe probe(many.limit.get(), ipKey(static_cast<std::uint32_t>(x % kManyKeys)));
    benchmark::DoNotOptimize(decide({&probe, 1}, now));
    now += 1000;
  }
  state.SetItemsProcessed(state.iterations());
  // Averaged over threads (the default sums them).
  using benchmark::Counter;
  state.counters["keys"] =
      Counter(static_cast<double>(many.limit->stats().keys), Counter::kAvgThreads);
  state.counters["bytes_per_key_heap"] = Counter(many.bytes_per_key_heap, Counter::kAvgThreads);
  state.counters["bytes_per_key_table"] = Counter(many.bytes_per_key_table, Counter::kAvgThreads);
}
BENCHMARK(BM_RandomKeyDecision)->Threads(1)->Threads(2)->UseRealTime();

// One sweep call over `slots` slots of a 1M-key table. Arg 0: nothing is
// full (pure scan); arg 1: everything is full (every slot removed; the table
// is refilled outside the timing when it runs empty).
void BM_SweepSlice(benchmark::State& state) {
  const auto slots = static_cast<std::size_t>(state.range(0));
  const bool removing = state.range(1) != 0;
  auto limit = Limit::create(limitConfig(config::LimitScope::kIp, 1, 10), kManyKeys);
  auto fill = [&] {
    for (std::uint32_t i = 0; i < kManyKeys; ++i) {
      Probe probe(limit.get(), ipKey(i));
      decide({&probe, 1}, kStart);
    }
  };
  fill();
  // 1/s, burst 10, one token taken at kStart: full again at kStart + 1 s.
  const Nanos now = removing ? kStart + kNanosPerSecond : kStart;
  std::size_t removed = 0;
  for (auto _ : state) {
    removed += limit->sweep(now, slots);
    if (removing && limit->stats().keys == 0) {
      state.PauseTiming();
      fill();
      state.ResumeTiming();
    }
  }
  state.counters["removed_per_slice"] =
      static_cast<double>(removed) / static_cast<double>(state.iterations());
  state.counters["ns_per_slot"] =
      benchmark::Counter(static_cast<double>(slots) * static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_SweepSlice)
    ->Args({10000, 0})
    ->Args({10000, 1})
    ->Args({100000, 0})
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace sluice::limiter
