#include "proxy/upstream/shared_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace sluice::upstream {
namespace {

config::UpstreamConfig upstreamWith(int targets, int max_connections, int max_pending) {
  config::UpstreamConfig cfg;
  cfg.name = "u";
  for (int i = 0; i < targets; ++i) {
    cfg.targets.push_back(config::Address{"127.0.0.1", static_cast<std::uint16_t>(9001 + i), false});
  }
  cfg.max_connections = max_connections;
  cfg.max_pending = max_pending;
  return cfg;
}

std::shared_ptr<SharedPool> pool(int targets, int max_connections, int max_pending = 10) {
  std::string error;
  auto p = SharedPool::create(upstreamWith(targets, max_connections, max_pending), &error);
  EXPECT_TRUE(p) << error;
  return p;
}

TEST(SharedPool, SlotsNeverExceedMaxConnectionsPerTarget) {
  auto p = pool(1, 3);
  EXPECT_TRUE(p->reserveSlot(0));
  EXPECT_TRUE(p->reserveSlot(0));
  EXPECT_TRUE(p->reserveSlot(0));
  EXPECT_FALSE(p->reserveSlot(0));
  p->releaseSlot(0);
  EXPECT_TRUE(p->reserveSlot(0));
  EXPECT_EQ(p->open(), 3);
}

TEST(SharedPool, RoundRobinSpreadsAcrossTargets) {
  auto p = pool(2, 10);
  auto a = p->reserveSlot(0);
  auto b = p->reserveSlot(0);
  ASSERT_TRUE(a && b);
  EXPECT_NE(*a, *b);
}

TEST(SharedPool, RefusingTargetIsSkippedForFiveSeconds) {
  auto p = pool(2, 10);
  p->markDown(0, 0);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(*p->reserveSlot(1), 1u);
  EXPECT_EQ(p->target(0).open.load(), 0);
  // Exactly at the end of the penalty the target is used again.
  bool saw_first = false;
  for (int i = 0; i < 4; ++i) saw_first |= *p->reserveSlot(kRefusedPenalty) == 0;
  EXPECT_TRUE(saw_first);
}

TEST(SharedPool, AllTargetsDownStillTriesOne) {
  auto p = pool(1, 10);
  p->markDown(0, 0);
  EXPECT_TRUE(p->reserveSlot(1));
}

TEST(SharedPool, WaitersAreServedInArrivalOrder) {
  auto p = pool(1, 1, 3);
  EXPECT_TRUE(p->enqueue({0, 1}));
  EXPECT_TRUE(p->enqueue({1, 2}));
  EXPECT_TRUE(p->enqueue({0, 3}));
  EXPECT_FALSE(p->enqueue({1, 4}));  // max_pending
  EXPECT_EQ(p->pending(), 3);
  EXPECT_TRUE(p->cancel({1, 2}));
  EXPECT_FALSE(p->cancel({1, 2}));
  EXPECT_EQ(p->popWaiter()->token, 1u);
  EXPECT_EQ(p->popWaiter()->token, 3u);
  EXPECT_FALSE(p->popWaiter());
  EXPECT_FALSE(p->hasWaiters());
}

TEST(SharedPool, ConcurrentReservationsRespectTheCap) {
  auto p = pool(1, 8);
  std::atomic<int> held{0};
  std::atomic<int> peak{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20000; ++i) {
        if (auto slot = p->reserveSlot(0)) {
          int now = held.fetch_add(1) + 1;
          int prev = peak.load();
          while (now > prev && !peak.compare_exchange_weak(prev, now)) {
          }
          held.fetch_sub(1);
          p->releaseSlot(*slot);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_LE(peak.load(), 8);
  EXPECT_EQ(p->open(), 0);
}

}  // namespace
}  // namespace sluice::upstream
