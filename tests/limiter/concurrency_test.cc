// Exactness under concurrency: threads share one simulated clock (an atomic
// tick each request advances), so the run is deterministic in simulated time
// and takes milliseconds, also under ThreadSanitizer.

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "proxy/limiter/decide.h"
#include "proxy/limiter/limit.h"
#include "tests/limiter/limit_test_util.h"

namespace sluice::limiter {
namespace {

using namespace test_util;  // NOLINT(google-build-using-namespace): test helpers

constexpr int kThreads = 4;
constexpr int kPerThread = 10000;
constexpr Nanos kStep = 100000;  // 0.1 ms of simulated time per request

struct HammerResult {
  std::int64_t admitted = 0;
  Nanos last_now = 0;
};

// Hammers `probes_for(thread)` from kThreads threads; returns admitted count.
template <typename MakeProbes>
HammerResult hammer(MakeProbes make_probes) {
  std::atomic<std::int64_t> tick{0};
  std::atomic<std::int64_t> admitted{0};
  std::atomic<Nanos> last{0};
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      auto probes = make_probes();
      // Start together so the threads really contend.
      ready.fetch_add(1);
      while (ready.load() < kThreads) std::this_thread::yield();
      std::int64_t mine = 0;
      Nanos now = 0;
      for (int i = 0; i < kPerThread; ++i) {
        now = kT0 + tick.fetch_add(1, std::memory_order_relaxed) * kStep;
        if (decide(probes, now).allowed) ++mine;
      }
      admitted.fetch_add(mine);
      Nanos seen = last.load();
      while (seen < now && !last.compare_exchange_weak(seen, now)) {
      }
    });
  }
  for (auto& thread : threads) thread.join();
  return {admitted.load(), last.load()};
}

// burst + rate * D for a 1000/s, burst 100 limit over [kT0, last].
double bound(Nanos last) { return 100 + 1000.0 * static_cast<double>(last - kT0) / kSec; }

TEST(Concurrency, OneHotKeyIsExact) {
  auto per_ip = ipLimit(1000, 100);
  HammerResult run = hammer([&] { return std::vector<Probe>{Probe{per_ip.get(), ipKey(1)}}; });
  EXPECT_LE(run.admitted, static_cast<std::int64_t>(bound(run.last_now)));
  EXPECT_GE(static_cast<double>(run.admitted), 0.99 * bound(run.last_now));
  EXPECT_EQ(per_ip->decisions(Outcome::kAllowed), static_cast<std::uint64_t>(run.admitted));
  EXPECT_EQ(per_ip->decisions(Outcome::kAllowed) + per_ip->decisions(Outcome::kDenied),
            static_cast<std::uint64_t>(kThreads * kPerThread));
}

TEST(Concurrency, GlobalBucketIsExact) {
  auto global = globalLimit(1000, 100);
  HammerResult run = hammer([&] { return std::vector<Probe>{Probe{global.get()}}; });
  EXPECT_LE(run.admitted, static_cast<std::int64_t>(bound(run.last_now)));
  EXPECT_GE(static_cast<double>(run.admitted), 0.99 * bound(run.last_now));
}

// Two limits where the global one is tighter: per-IP tokens taken for
// requests the global limit denies must all come back, so after the run the
// per-IP bucket has given out exactly the admitted requests.
TEST(Concurrency, DeniedRequestsReturnTheirTokens) {
  auto per_ip = ipLimit(1000, 100);
  auto global = globalLimit(500, 50);
  HammerResult run = hammer([&] {
    return std::vector<Probe>{Probe{per_ip.get(), ipKey(1)}, Probe{global.get()}};
  });
  const double global_bound = 50 + 500.0 * static_cast<double>(run.last_now - kT0) / kSec;
  EXPECT_LE(run.admitted, static_cast<std::int64_t>(global_bound));
  EXPECT_GE(static_cast<double>(run.admitted), 0.98 * global_bound);
  // per_ip gave out `admitted` tokens over the run; had denials leaked tokens
  // its bucket would be emptier than that accounts for.
  const KeyState state = per_ip->peek(ipKey(1), run.last_now);
  const double refilled = 100 + 1000.0 * static_cast<double>(run.last_now - kT0) / kSec;
  EXPECT_GE(static_cast<double>(state.remaining),
            std::min(100.0, refilled - static_cast<double>(run.admitted)) - 3);
}

TEST(Concurrency, ManyKeysAcrossShards) {
  auto per_ip = ipLimit(1000, 100, /*max_keys=*/100000);
  std::atomic<int> next_thread{0};
  HammerResult run = hammer([&] {
    const int t = next_thread.fetch_add(1);
    return std::vector<Probe>{Probe{per_ip.get(), ipKey(100 + t)}};
  });
  // Each thread owns a key: each key gets at most burst + rate * D.
  EXPECT_LE(run.admitted, kThreads * static_cast<std::int64_t>(bound(run.last_now)));
  EXPECT_EQ(per_ip->stats().keys, static_cast<std::uint64_t>(kThreads));
}

// Reloads (alternating bursts) while threads decide through the original
// Limit: requests on an old snapshot follow the newest params, the adoption
// walk races with decisions, and no reload ever refills a bucket, so the
// largest burst still bounds what was admitted.
TEST(Concurrency, ReloadDuringTraffic) {
  auto first = ipLimit(1000, 100);
  std::atomic<bool> done{false};
  std::thread reloader([&] {
    std::shared_ptr<Limit> latest = first;
    for (int i = 0; i < 20; ++i) {
      latest = Limit::reload(limitConfig("per_ip", config::LimitScope::kIp, 1000, i % 2 ? 100 : 50),
                             1000, latest, kT0);
      std::this_thread::yield();
    }
    done.store(true);
  });
  HammerResult run = hammer([&] { return std::vector<Probe>{Probe{first.get(), ipKey(1)}}; });
  reloader.join();
  EXPECT_TRUE(done.load());
  EXPECT_LE(run.admitted, static_cast<std::int64_t>(bound(run.last_now)));
  EXPECT_GE(static_cast<double>(run.admitted), 0.95 * (bound(run.last_now) - 50));
}

}  // namespace
}  // namespace sluice::limiter
