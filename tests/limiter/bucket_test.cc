#include "proxy/limiter/bucket.h"

#include <gtest/gtest.h>

#include <limits>

namespace sluice::limiter {
namespace {

constexpr Nanos kSec = kNanosPerSecond;
constexpr Nanos kStart = 1000 * kSec;  // an arbitrary fake "now"

config::Rate perSecond(double n) { return {n, 1}; }

// ---- params ----

struct ParamsCase {
  config::Rate rate;
  double burst;
  Nanos interval;
  Nanos tolerance;
  std::int64_t capacity;
  std::int64_t window;
};

class Params : public ::testing::TestWithParam<ParamsCase> {};

TEST_P(Params, IntervalRoundsUpToleranceRoundsDown) {
  const ParamsCase& c = GetParam();
  const BucketParams p = bucketParams(c.rate, c.burst);
  EXPECT_EQ(p.interval, c.interval);
  EXPECT_EQ(p.tolerance, c.tolerance);
  EXPECT_EQ(capacity(p), c.capacity);
  EXPECT_EQ(windowSeconds(p), c.window);
}

INSTANTIATE_TEST_SUITE_P(
    Rates, Params,
    ::testing::Values(ParamsCase{perSecond(1000), 100, 1000000, 100000000, 100, 1},
                      ParamsCase{perSecond(20), 40, 50000000, 2 * kSec, 40, 2},  // SPEC example
                      ParamsCase{perSecond(0.5), 1, 2 * kSec, 2 * kSec, 1, 2},
                      ParamsCase{perSecond(3), 3, 333333334, 1000000002, 3, 1},
                      ParamsCase{{100, 60}, 100, 600000000, 60 * kSec, 100, 60},
                      ParamsCase{{1, 3600}, 1, 3600 * kSec, 3600 * kSec, 1, 3600},
                      ParamsCase{perSecond(1), 1.5, kSec, 1500000000, 1, 2},
                      ParamsCase{perSecond(1), 0.2, kSec, kSec, 1, 1},  // burst < 1 is 1
                      ParamsCase{perSecond(5000), 10000, 200000, 2 * kSec, 10000, 2},
                      ParamsCase{perSecond(3e9), 2, 1, 2, 2, 1},  // T never below 1 ns
                      ParamsCase{{1e-6, 3600},
                                 1e9,
                                 kMaxTolerance,
                                 kMaxTolerance,
                                 1,
                                 kMaxTolerance / kSec + 1}));  // clamped

TEST(Params, FromTokensPerSecond) {
  EXPECT_EQ(bucketParams(0.5, 1), bucketParams(perSecond(0.5), 1));
  EXPECT_EQ(bucketParams(1000, 100).interval, 1000000);
}

// ---- single bucket behaviour ----

// Takes at `now` if admitted; returns whether it was.
bool request(Nanos& tat, Nanos now, const BucketParams& p) {
  if (!admits(tat, now, p)) return false;
  tat = afterTake(tat, now, p);
  return true;
}

TEST(Bucket, NewBucketIsFull) {
  const BucketParams p = bucketParams(perSecond(1), 5);
  const Nanos tat = std::numeric_limits<Nanos>::min();
  EXPECT_TRUE(isFull(tat, kStart));
  EXPECT_EQ(tokensLeft(tat, kStart, p), 5);
  EXPECT_EQ(waitForToken(tat, kStart, p), 0);
  EXPECT_EQ(timeToFull(tat, kStart), 0);
}

TEST(Bucket, ExactlyTheLastToken) {
  const BucketParams p = bucketParams(perSecond(1), 3);
  Nanos tat = 0;
  EXPECT_TRUE(request(tat, kStart, p));
  EXPECT_TRUE(request(tat, kStart, p));
  EXPECT_EQ(tokensLeft(tat, kStart, p), 1);
  EXPECT_TRUE(request(tat, kStart, p));  // the last one
  EXPECT_EQ(tokensLeft(tat, kStart, p), 0);
  EXPECT_EQ(waitForToken(tat, kStart, p), kSec);
  EXPECT_FALSE(request(tat, kStart, p));
  EXPECT_FALSE(request(tat, kStart + kSec - 1, p));  // 1 ns early
  EXPECT_EQ(waitForToken(tat, kStart + kSec - 1, p), 1);
  EXPECT_TRUE(request(tat, kStart + kSec, p));  // exactly on time
  EXPECT_FALSE(request(tat, kStart + kSec, p));
}

TEST(Bucket, ClockNotAdvancing) {
  const BucketParams p = bucketParams(perSecond(10), 4);
  Nanos tat = 0;
  int admitted = 0;
  for (int i = 0; i < 100; ++i) admitted += request(tat, kStart, p) ? 1 : 0;
  EXPECT_EQ(admitted, 4);
  EXPECT_EQ(waitForToken(tat, kStart, p), kSec / 10);
  EXPECT_EQ(timeToFull(tat, kStart), 4 * kSec / 10);
}

TEST(Bucket, ClockGoingBackwardsNeverAdmitsMore) {
  const BucketParams p = bucketParams(perSecond(1), 2);
  Nanos tat = 0;
  EXPECT_TRUE(request(tat, kStart, p));
  EXPECT_TRUE(request(tat, kStart, p));
  EXPECT_FALSE(request(tat, kStart - 5 * kSec, p));
  EXPECT_EQ(tokensLeft(tat, kStart - 5 * kSec, p), 0);
  EXPECT_TRUE(request(tat, kStart + kSec, p));
}

TEST(Bucket, HugeGapRefillsToBurstWithoutOverflow) {
  const BucketParams p = bucketParams(perSecond(5), 10);
  Nanos tat = 0;
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(request(tat, kStart, p));
  const Nanos later = kStart + 10LL * 365 * 24 * 3600 * kSec;  // ten years
  EXPECT_EQ(tokensLeft(tat, later, p), 10);
  EXPECT_TRUE(isFull(tat, later));
  int admitted = 0;
  for (int i = 0; i < 20; ++i) admitted += request(tat, later, p) ? 1 : 0;
  EXPECT_EQ(admitted, 10);
}

TEST(Bucket, ExtremeValuesSaturate) {
  constexpr Nanos kMax = std::numeric_limits<Nanos>::max();
  constexpr Nanos kMin = std::numeric_limits<Nanos>::min();
  const BucketParams p = bucketParams(perSecond(1), 3);
  EXPECT_EQ(backlog(kMax, kMin), kMax);
  EXPECT_EQ(backlog(kMin, kMax), 0);
  EXPECT_FALSE(admits(kMax, kMin, p));
  EXPECT_EQ(tokensLeft(kMax, kMin, p), 0);
  EXPECT_EQ(tokensLeft(kMin, kMax, p), 3);
  EXPECT_EQ(afterTake(kMax - 5, kMax - 10, p), kMax);
  EXPECT_EQ(afterTake(kMin, kMin, p), kMin + kSec);
  EXPECT_EQ(waitForToken(kMax, 0, p), kMax - 2 * kSec);
  EXPECT_EQ(saturatingAdd(kMin, -1), kMin);
}

TEST(Bucket, HalfTokenPerSecond) {
  const BucketParams p = bucketParams(perSecond(0.5), 1);
  Nanos tat = 0;
  EXPECT_TRUE(request(tat, kStart, p));
  EXPECT_FALSE(request(tat, kStart + kSec, p));
  EXPECT_FALSE(request(tat, kStart + 2 * kSec - 1, p));
  EXPECT_EQ(waitForToken(tat, kStart + kSec, p), kSec);
  EXPECT_TRUE(request(tat, kStart + 2 * kSec, p));
}

TEST(Bucket, FractionalBurstKeepsTheFraction) {
  const BucketParams p = bucketParams(perSecond(1), 1.5);
  Nanos tat = 0;
  EXPECT_TRUE(request(tat, kStart, p));  // 0.5 left
  EXPECT_EQ(tokensLeft(tat, kStart, p), 0);
  EXPECT_FALSE(request(tat, kStart + kSec / 2 - 1, p));
  EXPECT_TRUE(request(tat, kStart + kSec / 2, p));  // 0.5 + 0.5
  EXPECT_FALSE(request(tat, kStart + kSec / 2, p));
}

TEST(Bucket, CeilSeconds) {
  EXPECT_EQ(ceilSeconds(-5), 0);
  EXPECT_EQ(ceilSeconds(0), 0);
  EXPECT_EQ(ceilSeconds(1), 1);
  EXPECT_EQ(ceilSeconds(kSec), 1);
  EXPECT_EQ(ceilSeconds(kSec + 1), 2);
  EXPECT_EQ(ceilSeconds(std::numeric_limits<Nanos>::max()), 9223372037);
}

// Over any interval D a key asking every `step` gets at most burst + rate * D
// and, asking often enough, exactly floor((tau + D) / T) (no under-run).
struct RateCase {
  double rate;
  double burst;
  Nanos step;
  Nanos duration;
};

class AdmittedOverInterval : public ::testing::TestWithParam<RateCase> {};

TEST_P(AdmittedOverInterval, NeverAboveBurstPlusRateTimesD) {
  const RateCase& c = GetParam();
  const BucketParams p = bucketParams(c.rate, c.burst);
  Nanos tat = 0;
  std::int64_t admitted = 0;
  for (Nanos t = 0; t <= c.duration; t += c.step) admitted += request(tat, kStart + t, p) ? 1 : 0;
  const double bound = c.burst + c.rate * static_cast<double>(c.duration) / kSec;
  EXPECT_LE(static_cast<double>(admitted), bound);
  EXPECT_GE(static_cast<double>(admitted), bound - 1 - c.rate * static_cast<double>(c.step) / kSec);
}

INSTANTIATE_TEST_SUITE_P(
    Rates, AdmittedOverInterval,
    ::testing::Values(RateCase{1000, 100, 100000, 10 * kSec}, RateCase{3, 3, 1000000, 20 * kSec},
                      RateCase{0.5, 1, 10000000, 60 * kSec}, RateCase{7, 2.5, 1000000, 10 * kSec},
                      RateCase{1.0 / 60, 1, kSec, 600 * kSec}, RateCase{100000, 1, 1000, kSec}));

// ---- re-expressing a bucket under new params ----

struct ConvertCase {
  const char* name;
  double rate_from;
  double burst_from;
  std::int64_t used;  // tokens taken at kStart before converting
  double rate_to;
  double burst_to;
  std::int64_t tokens_after;
};

class Convert : public ::testing::TestWithParam<ConvertCase> {};

TEST_P(Convert, KeepsTokensClampedNeverRefills) {
  const ConvertCase& c = GetParam();
  const BucketParams from = bucketParams(c.rate_from, c.burst_from);
  const BucketParams to = bucketParams(c.rate_to, c.burst_to);
  Nanos tat = 0;
  for (std::int64_t i = 0; i < c.used; ++i) ASSERT_TRUE(request(tat, kStart, from));
  const std::int64_t before = tokensLeft(tat, kStart, from);
  const Nanos converted = convertTat(tat, kStart, from, to);
  EXPECT_EQ(tokensLeft(converted, kStart, to), c.tokens_after);
  if (c.used > 0) {
    EXPECT_LE(tokensLeft(converted, kStart, to), before);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, Convert,
    ::testing::Values(ConvertCase{"BurstUpKeepsTokens", 10, 100, 90, 10, 200, 10},
                      ConvertCase{"BurstDownClamps", 10, 100, 20, 10, 50, 50},
                      ConvertCase{"BurstDownBelowLeftKeeps", 10, 100, 80, 10, 50, 20},
                      ConvertCase{"RateDownEmptyStaysEmpty", 100, 100, 100, 1, 100, 0},
                      ConvertCase{"RateUpEmptyStaysEmpty", 1, 100, 100, 100, 100, 0},
                      ConvertCase{"RateDownKeepsTokens", 100, 100, 60, 1, 100, 40},
                      ConvertCase{"FullStaysFull", 10, 100, 0, 10, 200, 200},
                      ConvertCase{"OneUsedOfTwoHundred", 10, 100, 1, 10, 200, 99}),
    [](const auto& test) { return std::string(test.param.name); });

TEST(Convert, PartialTokenIsKeptNotRoundedUp) {
  const BucketParams from = bucketParams(1, 2);
  const BucketParams to = bucketParams(config::Rate{1, 60}, 2);
  Nanos tat = 0;
  ASSERT_TRUE(request(tat, kStart, from));
  ASSERT_TRUE(request(tat, kStart, from));
  // 0.5 token back under the old rate; under 1/min that is 30 s from a token.
  const Nanos converted = convertTat(tat, kStart + kSec / 2, from, to);
  EXPECT_EQ(waitForToken(converted, kStart + kSec / 2, to), 30 * kSec);
}

TEST(Convert, StaleNowKeepsAnOverdrawnBalance) {
  const BucketParams from = bucketParams(1, 10);
  const BucketParams to = bucketParams(1, 5);
  Nanos tat = 0;
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(request(tat, kStart, from));
  // Converted at a `now` 100 s behind the decisions: -100 tokens then.
  const Nanos converted = convertTat(tat, kStart - 100 * kSec, from, to);
  EXPECT_EQ(converted, tat - 5 * kSec);  // same rate: a shift by the change in tau
  EXPECT_EQ(tokensLeft(converted, kStart, to), 0);
  EXPECT_EQ(waitForToken(converted, kStart, to), kSec);
}

TEST(Convert, SameRateIsAShiftWhateverNow) {
  const BucketParams from = bucketParams(10, 100);
  const BucketParams to = bucketParams(10, 40);
  Nanos tat = 0;
  for (int i = 0; i < 90; ++i) ASSERT_TRUE(request(tat, kStart, from));
  for (Nanos now : {kStart - 50 * kSec, kStart - kSec, kStart, kStart + kSec / 2}) {
    EXPECT_EQ(convertTat(tat, now, from, to), tat - 6 * kSec) << now;
  }
}

}  // namespace
}  // namespace sluice::limiter
