// Rate-limit header rendering: the exact lines a client reads.

#include "proxy/admission/headers.h"

#include <gtest/gtest.h>

#include <array>
#include <string>
#include <vector>

#include "proxy/limiter/limit.h"
#include "tests/admission/admission_test_util.h"

namespace sluice::admission {
namespace {

using limiter::Nanos;
constexpr Nanos kSecond = 1000 * 1000 * 1000;

// 10 tokens per 60s window: one token every 6s.
BucketView bucket(std::int64_t remaining, Nanos full_in) {
  return {"per_ip", 10, 60, remaining, 0, full_in, 6 * kSecond};
}

struct HeaderCase {
  const char* name;
  config::HeaderStyle style;
  BucketView view;
  std::int64_t t;
  const char* want;
};

const std::vector<HeaderCase>& headerCases() {
  static const std::vector<HeaderCase> cases = {
      {"IetfWithSecondsUntilAToken", config::HeaderStyle::kIetf, bucket(0, 60 * kSecond), 6,
       "RateLimit-Policy: \"per_ip\";q=10;w=60\r\nRateLimit: \"per_ip\";r=0;t=6\r\n"},
      {"IetfFullBucketOmitsT", config::HeaderStyle::kIetf, bucket(10, 0), 0,
       "RateLimit-Policy: \"per_ip\";q=10;w=60\r\nRateLimit: \"per_ip\";r=10\r\n"},
      {"XRateLimitResetIsSecondsUntilFull", config::HeaderStyle::kXRateLimit,
       bucket(3, 41 * kSecond + 1), 1,
       "X-RateLimit-Limit: 10\r\nX-RateLimit-Remaining: 3\r\nX-RateLimit-Reset: 42\r\n"},
      {"NegativeRemainingReadsZero", config::HeaderStyle::kXRateLimit, bucket(-2, 0), 0,
       "X-RateLimit-Limit: 10\r\nX-RateLimit-Remaining: 0\r\nX-RateLimit-Reset: 0\r\n"},
      {"StyleNoneWritesNothing", config::HeaderStyle::kNone, bucket(0, 60 * kSecond), 6, ""},
  };
  return cases;
}

class HeaderTest : public ::testing::TestWithParam<HeaderCase> {};

TEST_P(HeaderTest, RendersTheFields) {
  const HeaderCase& c = GetParam();
  std::string h = "Before: 1\r\n";
  appendLimitHeaders(h, c.view, c.style, c.t);
  EXPECT_EQ(h, std::string("Before: 1\r\n") + c.want);
}

INSTANTIATE_TEST_SUITE_P(Styles, HeaderTest, ::testing::ValuesIn(headerCases()),
                         [](const auto& param_info) { return std::string(param_info.param.name); });

TEST(RetryAfter, IsWholeSecondsAndNeverZero) {
  for (auto [secs, want] :
       std::vector<std::pair<std::int64_t, const char*>>{{0, "Retry-After: 1\r\n"},
                                                         {-5, "Retry-After: 1\r\n"},
                                                         {1, "Retry-After: 1\r\n"},
                                                         {3600, "Retry-After: 3600\r\n"}}) {
    std::string h;
    appendRetryAfter(h, secs);
    EXPECT_EQ(h, want) << secs;
  }
}

TEST(NextToken, SecondsUntilTheNextTokenIsBack) {
  // Full: nothing to wait for.
  EXPECT_EQ(nextTokenSeconds(bucket(10, 0)), 0);
  // One missing, back in 2.5s: 3.
  EXPECT_EQ(nextTokenSeconds(bucket(9, 2 * kSecond + kSecond / 2)), 3);
  // Three missing, full in 14s: the next is back in 14 - 2 * 6 = 2s.
  EXPECT_EQ(nextTokenSeconds(bucket(7, 14 * kSecond)), 2);
  // About to be back: at least 1.
  EXPECT_EQ(nextTokenSeconds(bucket(9, 1)), 1);
  EXPECT_EQ(nextTokenSeconds(bucket(7, 12 * kSecond)), 1);
}

TEST(Denial, NamesEveryDenyingLimitAndTheHeadlinesFields) {
  auto cfg = test_util::loadLimits(
      "  a: {per: global, rate: 1/s, burst: 1}\n  b: {per: global, rate: 1/m, burst: 1}\n"
      "  c: {per: global, rate: 100/s}\n",
      "a, b, c");
  ASSERT_TRUE(cfg);
  std::vector<std::shared_ptr<limiter::Limit>> limits;
  for (const auto& lc : cfg->limits) limits.push_back(limiter::Limit::create(lc, 1000));
  std::array<limiter::Probe, 3> probes{limiter::Probe(limits[0].get()),
                                       limiter::Probe(limits[1].get()),
                                       limiter::Probe(limits[2].get())};
  ASSERT_TRUE(limiter::decide(probes, 0).allowed);
  const limiter::Decision d = limiter::decide(probes, 0);
  ASSERT_FALSE(d.allowed);
  AdmissionResult out;
  renderDenial(probes, d, config::HeaderStyle::kIetf, &out);
  EXPECT_EQ(out.status, 429);
  ASSERT_EQ(out.violated.size(), 2u);
  EXPECT_EQ(out.violated[0], "a");
  EXPECT_EQ(out.violated[1], "b");
  // b waits longest (a minute): it is the headline and sets Retry-After.
  EXPECT_EQ(out.headers,
            "Retry-After: 60\r\nRateLimit-Policy: \"b\";q=1;w=60\r\nRateLimit: \"b\";r=0;t=60\r\n");
}

}  // namespace
}  // namespace sluice::admission
