#include "proxy/limiter/key_table.h"

#include <gtest/gtest.h>

#include <random>
#include <set>
#include <vector>

#include "tests/limiter/limit_test_util.h"

namespace sluice::limiter {
namespace {

using namespace test_util;  // NOLINT(google-build-using-namespace): test helpers

constexpr std::uint64_t kSeed = 42;
const std::int64_t kFull = packState(kMinStoredTat, 0);
const std::int64_t kBusy = packState(kMaxStoredTat, 0);  // far from full

// Inserts (or touches) `key` with state `state`.
void put(KeyTable& table, const client::KeyHash& key, std::int64_t state) {
  table.update(key, state, [&](Entry& e) { e.state = state; });
}

bool has(KeyTable& table, const client::KeyHash& key) {
  return table.updateExisting(key, [](Entry&) {});
}

TEST(KeyTable, StatePacksTatAndTag) {
  for (Nanos tat : {Nanos{0}, Nanos{-5}, kT0, kMaxStoredTat, kMinStoredTat}) {
    for (std::uint32_t tag = 0; tag < 4; ++tag) {
      EXPECT_EQ(stateTat(packState(tat, tag)), tat);
      EXPECT_EQ(stateTag(packState(tat, tag)), tag);
    }
  }
  EXPECT_EQ(stateTat(packState(std::numeric_limits<Nanos>::max(), 1)), kMaxStoredTat);
  EXPECT_EQ(stateTat(packState(std::numeric_limits<Nanos>::min(), 1)), kMinStoredTat);
}

TEST(KeyTable, EvictsALeastRecentlyUsedKey) {
  KeyTable table(3, kSeed);
  EXPECT_EQ(table.shardCount(), 1U);
  put(table, ipKey(1), kBusy);
  put(table, ipKey(2), kBusy);
  put(table, ipKey(3), kBusy);
  put(table, ipKey(1), kBusy);  // a use: 2 is now the least recently used
  put(table, ipKey(4), kBusy);
  EXPECT_TRUE(has(table, ipKey(1)));
  EXPECT_FALSE(has(table, ipKey(2)));
  EXPECT_TRUE(has(table, ipKey(3)));
  EXPECT_TRUE(has(table, ipKey(4)));
  EXPECT_EQ(table.size(), 3U);
  EXPECT_EQ(table.evicted(), 1U);
}

TEST(KeyTable, LookupWithoutInsertDoesNotMarkUsed) {
  KeyTable table(2, kSeed);
  put(table, ipKey(1), kBusy);
  put(table, ipKey(2), kBusy);
  EXPECT_TRUE(has(table, ipKey(1)));  // updateExisting: not a use
  put(table, ipKey(3), kBusy);
  EXPECT_FALSE(has(table, ipKey(1)));
}

TEST(KeyTable, FloodOfNewKeysDoesNotEvictAReturningClient) {
  KeyTable table(100, kSeed);
  put(table, ipKey(1), kBusy);
  for (int i = 0; i < 5000; ++i) {
    if (i % 20 == 0) put(table, ipKey(1), kBusy);  // the client comes back
    put(table, ipKey(1000 + i), kBusy);            // one-shot keys
  }
  EXPECT_TRUE(has(table, ipKey(1)));
  EXPECT_EQ(table.size(), 100U);
}

TEST(KeyTable, StaysBoundedWhateverThePopulation) {
  KeyTable table(1000, kSeed);
  for (int i = 0; i < 50000; ++i) put(table, ipKey(i), kBusy);
  EXPECT_LE(table.size(), 1000U);
  EXPECT_GE(table.size(), 990U);  // per-shard caps: at most shards-1 short
  EXPECT_EQ(table.evicted(), 50000U - table.size());
  EXPECT_LE(table.slotCount(), 1000U);
}

TEST(KeyTable, SweepRemovesOnlyFullBuckets) {
  KeyTable table(100, kSeed);
  for (int i = 0; i < 20; ++i) put(table, ipKey(i), i % 2 == 0 ? kFull : packState(kT0 + 1, 0));
  EXPECT_EQ(table.sweep(kT0, 1000), 10U);
  EXPECT_EQ(table.size(), 10U);
  EXPECT_EQ(table.swept(), 10U);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(has(table, ipKey(i)), i % 2 == 1) << i;
  // One ns later those are full too.
  EXPECT_EQ(table.sweep(kT0 + 1, 1000), 10U);
  EXPECT_EQ(table.size(), 0U);
}

TEST(KeyTable, SweepExaminesABoundedSliceAndResumes) {
  KeyTable table(100000, kSeed);
  ASSERT_GT(table.shardCount(), 1U);
  for (int i = 0; i < 5000; ++i) put(table, ipKey(i), kFull);
  std::size_t total = 0;
  int calls = 0;
  while (total < 5000) {
    const std::size_t removed = table.sweep(kT0, 100);
    EXPECT_LE(removed, 100U);
    total += removed;
    ++calls;
    ASSERT_LT(calls, 200);
  }
  EXPECT_EQ(table.size(), 0U);
  // 5000 slots + one step per shard switch, 100 per call.
  EXPECT_LE(calls, static_cast<int>((5000 + table.shardCount()) / 100 + 2));
}

TEST(KeyTable, SweptKeysComeBackFresh) {
  KeyTable table(10, kSeed);
  table.update(ipKey(1), kFull, [](Entry& e) {
    e.allowed = 7;
    e.state = packState(kT0 - 1, 0);
  });
  EXPECT_EQ(table.sweep(kT0, 100), 1U);
  table.update(ipKey(1), kFull, [](Entry& e) {
    EXPECT_EQ(e.allowed, 0U);
    EXPECT_EQ(e.state, kFull);
  });
}

// Random inserts and sweeps against a std::set model: exercises linear
// probing, backward-shift deletion and slot reuse in crowded shards.
TEST(KeyTable, MatchesAModelUnderChurn) {
  KeyTable table(4096, kSeed);
  std::mt19937_64 rng(3);
  std::set<int> live;
  std::vector<bool> busy(20000, false);
  for (int round = 0; round < 20; ++round) {
    for (int i = 0; i < 3000; ++i) {
      const int k = static_cast<int>(rng() % 20000);
      if (live.size() >= 2500 && live.count(k) == 0) continue;  // stay under every shard cap
      busy[static_cast<std::size_t>(k)] = rng() % 3 != 0;
      put(table, ipKey(k), busy[static_cast<std::size_t>(k)] ? kBusy : kFull);
      live.insert(k);
    }
    if (table.evicted() != 0) GTEST_SKIP() << "a shard filled up; model no longer exact";
    table.sweep(kT0, 1000000);
    for (auto it = live.begin(); it != live.end();) {
      it = busy[static_cast<std::size_t>(*it)] ? std::next(it) : live.erase(it);
    }
    ASSERT_EQ(table.size(), live.size());
    for (int k = 0; k < 20000; ++k) ASSERT_EQ(has(table, ipKey(k)), live.count(k) == 1) << k;
    // Free some busy ones for the next round.
    for (int k : live) {
      if (rng() % 2 == 0) {
        busy[static_cast<std::size_t>(k)] = false;
        table.updateExisting(ipKey(k), [](Entry& e) { e.state = kFull; });
      }
    }
  }
}

TEST(KeyTable, ShrinkingMaxKeysEvicts) {
  KeyTable table(100, kSeed);
  for (int i = 0; i < 100; ++i) put(table, ipKey(i), kBusy);
  table.setMaxKeys(10);
  EXPECT_EQ(table.size(), 10U);
  EXPECT_EQ(table.evicted(), 90U);
  for (int i = 90; i < 100; ++i) EXPECT_TRUE(has(table, ipKey(i)));  // most recent kept
}

TEST(KeyTable, MemoryPerKeyIsBounded) {
  KeyTable table(1 << 20, kSeed);
  constexpr int kKeys = 200000;
  for (int i = 0; i < kKeys; ++i) put(table, ipKey(i), kBusy);
  const double per_key = static_cast<double>(table.memoryBytes()) / kKeys;
  EXPECT_LE(per_key, 96.0);
  RecordProperty("bytes_per_key", std::to_string(per_key));
  EXPECT_EQ(sizeof(Entry), 48U);
}

// Through Limit: eviction is counted and an evicted key comes back full.
TEST(KeyTable, LimitEvictsLeastRecentlyUsedAtMaxKeys) {
  auto limit = ipLimit(1, 1, /*max_keys=*/2);
  ASSERT_TRUE(decideOne(*limit, ipKey(1), kT0).allowed);
  ASSERT_TRUE(decideOne(*limit, ipKey(2), kT0).allowed);
  ASSERT_FALSE(decideOne(*limit, ipKey(1), kT0).allowed);  // touches 1
  ASSERT_TRUE(decideOne(*limit, ipKey(3), kT0).allowed);   // evicts 2
  EXPECT_EQ(limit->stats().evicted, 1U);
  EXPECT_EQ(limit->stats().keys, 2U);
  EXPECT_FALSE(decideOne(*limit, ipKey(1), kT0).allowed);  // still tracked, still empty
  EXPECT_TRUE(decideOne(*limit, ipKey(2), kT0).allowed);   // evicted: full again
}

TEST(KeyTable, LimitSweepCountsAndKeepsDecisions) {
  auto limit = ipLimit(1, 2);
  decideOne(*limit, ipKey(1), kT0);
  decideOne(*limit, ipKey(2), kT0);
  decideOne(*limit, ipKey(2), kT0);
  EXPECT_EQ(limit->sweep(kT0 + kSec / 2, 100), 0U);
  EXPECT_EQ(limit->sweep(kT0 + kSec, 100), 1U);  // key 1 refilled
  EXPECT_EQ(limit->stats().keys, 1U);
  EXPECT_EQ(limit->sweep(kT0 + 2 * kSec, 100), 1U);
  EXPECT_EQ(limit->stats().swept, 2U);
  EXPECT_EQ(limit->stats().keys, 0U);
  EXPECT_EQ(globalLimit(1, 1)->sweep(kT0, 100), 0U);
}

}  // namespace
}  // namespace sluice::limiter
