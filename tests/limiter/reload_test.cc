#include <gtest/gtest.h>

#include "proxy/limiter/decide.h"
#include "proxy/limiter/limit.h"
#include "tests/limiter/limit_test_util.h"

namespace sluice::limiter {
namespace {

using namespace test_util;  // NOLINT(google-build-using-namespace): test helpers

config::LimitConfig ipConfig(double rate, double burst) {
  return limitConfig("per_ip", config::LimitScope::kIp, rate, burst);
}

// Takes `n` tokens of `key` at `now`.
void use(Limit& limit, const client::KeyHash& key, int n, Nanos now) {
  for (int i = 0; i < n; ++i) ASSERT_TRUE(decideOne(limit, key, now).allowed) << i;
}

TEST(Reload, KeepsBucketsOfTheSameNameAndPer) {
  auto old_limit = Limit::create(ipConfig(1, 10), 100);
  use(*old_limit, ipKey(1), 7, kT0);
  auto new_limit = Limit::reload(ipConfig(1, 10), 100, old_limit, kT0);
  EXPECT_EQ(new_limit->peek(ipKey(1), kT0).remaining, 3);
  EXPECT_EQ(new_limit->stats().keys, 1U);
}

struct ClampCase {
  const char* name;
  double rate_from;
  double burst_from;
  int used;
  double rate_to;
  double burst_to;
  std::int64_t remaining;
};

class ReloadClamp : public ::testing::TestWithParam<ClampCase> {};

TEST_P(ReloadClamp, NeverRefills) {
  const ClampCase& c = GetParam();
  auto old_limit = Limit::create(ipConfig(c.rate_from, c.burst_from), 100);
  use(*old_limit, ipKey(1), c.used, kT0);
  auto new_limit = Limit::reload(ipConfig(c.rate_to, c.burst_to), 100, old_limit, kT0);
  EXPECT_EQ(new_limit->peek(ipKey(1), kT0).remaining, c.remaining);
  int admitted = 0;
  while (decideOne(*new_limit, ipKey(1), kT0).allowed) ++admitted;
  EXPECT_EQ(admitted, c.remaining);
}

INSTANTIATE_TEST_SUITE_P(Cases, ReloadClamp,
                         ::testing::Values(ClampCase{"BurstUp", 1, 10, 7, 1, 20, 3},
                                           ClampCase{"BurstDown", 1, 10, 2, 1, 5, 5},
                                           ClampCase{"BurstDownKeepsFewer", 1, 10, 8, 1, 5, 2},
                                           ClampCase{"RateDownEmpty", 100, 10, 10, 1, 10, 0},
                                           ClampCase{"RateDownPartial", 100, 10, 4, 1, 10, 6},
                                           ClampCase{"RateUpEmpty", 1, 10, 10, 100, 10, 0},
                                           ClampCase{"BothChange", 10, 100, 95, 1, 20, 5},
                                           ClampCase{"UnusedBucketIsFullUnderTheNewBurst", 1, 10, 0,
                                                     1, 20, 20}),
                         [](const auto& test) { return std::string(test.param.name); });

TEST(Reload, RateDownRefillsAtTheNewRate) {
  auto old_limit = Limit::create(ipConfig(100, 10), 100);
  use(*old_limit, ipKey(1), 10, kT0);
  auto new_limit = Limit::reload(ipConfig(1, 10), 100, old_limit, kT0);
  EXPECT_FALSE(decideOne(*new_limit, ipKey(1), kT0 + kSec / 2).allowed);
  Probe probe;
  Decision d = decideOne(*new_limit, ipKey(1), kT0 + kSec / 2, &probe);
  EXPECT_EQ(d.retry_after_seconds, 1);
  EXPECT_TRUE(decideOne(*new_limit, ipKey(1), kT0 + kSec).allowed);
}

TEST(Reload, GlobalBucketIsAdoptedToo) {
  auto old_limit = globalLimit(1, 10);
  use(*old_limit, {}, 6, kT0);
  auto new_limit = Limit::reload(limitConfig("global", config::LimitScope::kGlobal, 1, 30), 1000,
                                 old_limit, kT0);
  EXPECT_EQ(new_limit->peek({}, kT0).remaining, 4);
}

TEST(Reload, DifferentPerStartsFresh) {
  auto old_limit = Limit::create(ipConfig(1, 10), 100);
  use(*old_limit, ipKey(1), 10, kT0);
  auto new_limit =
      Limit::reload(limitConfig("per_ip", config::LimitScope::kApiKey, 1, 10), 100, old_limit, kT0);
  EXPECT_EQ(new_limit->peek(ipKey(1), kT0).remaining, 10);
  EXPECT_EQ(new_limit->stats().keys, 0U);
  // The old limit is untouched and keeps deciding on its own buckets.
  EXPECT_FALSE(decideOne(*old_limit, ipKey(1), kT0).allowed);
}

TEST(Reload, DifferentNameStartsFresh) {
  auto old_limit = Limit::create(ipConfig(1, 10), 100);
  use(*old_limit, ipKey(1), 10, kT0);
  auto new_limit =
      Limit::reload(limitConfig("other", config::LimitScope::kIp, 1, 10), 100, old_limit, kT0);
  EXPECT_EQ(new_limit->peek(ipKey(1), kT0).remaining, 10);
}

TEST(Reload, NullPreviousStartsFresh) {
  auto limit = Limit::reload(ipConfig(1, 10), 100, nullptr, kT0);
  EXPECT_EQ(limit->peek(ipKey(1), kT0).remaining, 10);
}

TEST(Reload, OldSnapshotDecidesWithTheNewParams) {
  auto old_limit = Limit::create(ipConfig(1, 10), 100);
  use(*old_limit, ipKey(1), 5, kT0);
  auto new_limit = Limit::reload(ipConfig(1, 2), 100, old_limit, kT0);
  // A request still holding the old snapshot: same buckets, new burst.
  Probe probe;
  EXPECT_TRUE(decideOne(*old_limit, ipKey(1), kT0, &probe).allowed);
  EXPECT_EQ(probe.burst, 2);
  EXPECT_TRUE(decideOne(*old_limit, ipKey(1), kT0).allowed);
  EXPECT_FALSE(decideOne(*new_limit, ipKey(1), kT0).allowed);
}

TEST(Reload, CountersSurviveAdoption) {
  auto old_limit = Limit::create(ipConfig(1, 1), 100);
  decideOne(*old_limit, ipKey(1), kT0);
  decideOne(*old_limit, ipKey(1), kT0);
  auto new_limit = Limit::reload(ipConfig(1, 1), 100, old_limit, kT0);
  EXPECT_EQ(new_limit->decisions(Outcome::kAllowed), 1U);
  EXPECT_EQ(new_limit->decisions(Outcome::kDenied), 1U);
  EXPECT_EQ(new_limit->topDenied(1, kT0).at(0).denied, 1U);
}

TEST(Reload, ShrinkingMaxKeysEvicts) {
  auto old_limit = Limit::create(ipConfig(1, 10), 100);
  for (int i = 0; i < 50; ++i) use(*old_limit, ipKey(i), 1, kT0);
  auto new_limit = Limit::reload(ipConfig(1, 10), 20, old_limit, kT0);
  EXPECT_EQ(new_limit->stats().keys, 20U);
  EXPECT_EQ(new_limit->stats().evicted, 30U);
}

// Many reloads in a row, alternating bursts and rates, with traffic in
// between: the remaining tokens never exceed what the bucket had before each
// reload (generation tags wrap around every 4 reloads).
TEST(Reload, ChainOfReloadsNeverRefills) {
  auto limit = Limit::create(ipConfig(10, 10), 100);
  Nanos now = kT0;
  const double bursts[] = {10, 40, 5, 40, 20, 3, 50};
  const double rates[] = {10, 1, 100, 2, 10, 0.5, 5};
  for (int round = 0; round < 21; ++round) {
    decideOne(*limit, ipKey(1), now);
    decideOne(*limit, ipKey(2), now);
    const std::int64_t before1 = limit->peek(ipKey(1), now).remaining;
    const std::int64_t before2 = limit->peek(ipKey(2), now).remaining;
    auto next = Limit::reload(ipConfig(rates[round % 7], bursts[round % 7]), 100, limit, now);
    EXPECT_LE(next->peek(ipKey(1), now).remaining, before1) << round;
    EXPECT_LE(next->peek(ipKey(2), now).remaining, before2) << round;
    limit = next;
    now += kSec / 100;
  }
}

}  // namespace
}  // namespace sluice::limiter
