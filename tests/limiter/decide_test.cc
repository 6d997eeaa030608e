#include "proxy/limiter/decide.h"

#include <gtest/gtest.h>

#include <array>
#include <vector>

#include "tests/limiter/limit_test_util.h"

namespace sluice::limiter {
namespace {

using namespace test_util;  // NOLINT(google-build-using-namespace): test helpers

TEST(Decide, AdmitsWhileEveryLimitAdmits) {
  auto global = globalLimit(100, 3);
  auto per_ip = ipLimit(100, 2);
  std::array<Probe, 2> probes{Probe{global.get()}, Probe{per_ip.get(), ipKey(1)}};
  Decision d = decide(probes, kT0);
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.retry_after_seconds, 0);
  EXPECT_EQ(probes[0].outcome, Outcome::kAllowed);
  EXPECT_EQ(probes[0].remaining, 2);
  EXPECT_EQ(probes[1].remaining, 1);
  EXPECT_TRUE(probes[0].consumed);
  EXPECT_EQ(d.headline, 1);  // tightest: fewest whole tokens left
}

TEST(Decide, DeniedRequestConsumesNoTokens) {
  auto global = globalLimit(1, 10);
  auto per_ip = ipLimit(1, 1);
  std::array<Probe, 2> probes{Probe{global.get()}, Probe{per_ip.get(), ipKey(1)}};
  ASSERT_TRUE(decide(probes, kT0).allowed);
  EXPECT_EQ(global->peek({}, kT0).remaining, 9);
  Decision d = decide(probes, kT0);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(probes[0].outcome, Outcome::kAllowed);  // global itself admitted it
  EXPECT_FALSE(probes[0].consumed);
  EXPECT_EQ(probes[0].remaining, 9);  // reported as the request found it
  EXPECT_EQ(probes[1].outcome, Outcome::kDenied);
  EXPECT_EQ(global->peek({}, kT0).remaining, 9);  // the token came back
}

TEST(Decide, DenialByAnEarlierLimitTakesNothingFromLaterOnes) {
  auto per_ip = ipLimit(1, 1);
  auto global = globalLimit(1, 5);
  ASSERT_TRUE(decideOne(*per_ip, ipKey(1), kT0).allowed);
  std::array<Probe, 2> probes{Probe{per_ip.get(), ipKey(1)}, Probe{global.get()}};
  EXPECT_FALSE(decide(probes, kT0).allowed);
  EXPECT_EQ(global->peek({}, kT0).remaining, 5);
}

TEST(Decide, ManyDeniedRequestsLeaveOtherBucketsFull) {
  auto global = globalLimit(1, 3);
  auto per_ip = ipLimit(1, 100);
  // Exhaust the global bucket from other clients.
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(decideOne(*global, {}, kT0).allowed);
  for (int i = 0; i < 50; ++i) {
    std::array<Probe, 2> probes{Probe{per_ip.get(), ipKey(7)}, Probe{global.get()}};
    ASSERT_FALSE(decide(probes, kT0).allowed);
  }
  EXPECT_EQ(per_ip->peek(ipKey(7), kT0).remaining, 100);
  EXPECT_EQ(per_ip->decisions(Outcome::kAllowed), 50U);
  EXPECT_EQ(global->decisions(Outcome::kDenied), 50U);
}

// Exhaust a bucket, then wait exactly Retry-After: the request is admitted.
struct RetryCase {
  double rate;
  double burst;
  Nanos offset;  // extra time before exhausting, to vary the phase
  std::int64_t expected;
};

class RetryAfter : public ::testing::TestWithParam<RetryCase> {};

TEST_P(RetryAfter, RoundsUpAndIsNeverEarly) {
  const RetryCase& c = GetParam();
  auto per_ip = ipLimit(c.rate, c.burst);
  const Nanos now = kT0 + c.offset;
  while (decideOne(*per_ip, ipKey(1), now).allowed) {
  }
  Probe probe;
  Decision d = decideOne(*per_ip, ipKey(1), now, &probe);
  ASSERT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after_seconds, c.expected);
  EXPECT_EQ(d.headline, 0);
  EXPECT_EQ(probe.remaining, 0);
  EXPECT_EQ(ceilSeconds(probe.wait), d.retry_after_seconds);  // RateLimit t == Retry-After
  EXPECT_TRUE(decideOne(*per_ip, ipKey(1), now + d.retry_after_seconds * kSec).allowed);
}

INSTANTIATE_TEST_SUITE_P(Rates, RetryAfter,
                         ::testing::Values(RetryCase{1, 1, 0, 1}, RetryCase{1000, 5, 0, 1},
                                           RetryCase{0.5, 1, 0, 2}, RetryCase{0.3, 2, 7, 4},
                                           RetryCase{3, 3, 1, 1}, RetryCase{0.25, 1, 0, 4},
                                           RetryCase{0.4, 1.5, 0, 2}));

TEST(RetryAfter, CoversEveryDenyingLimit) {
  auto fast = ipLimit(1, 1);  // denies for 1 s
  auto slow = Limit::create(limitConfig("per_key", config::LimitScope::kApiKey, 0.1, 1), 100);
  auto roomy = globalLimit(1, 100);
  std::array<Probe, 3> probes{Probe{roomy.get()}, Probe{fast.get(), ipKey(1)},
                              Probe{slow.get(), client::hashApiKey("k")}};
  ASSERT_TRUE(decide(probes, kT0).allowed);
  Decision d = decide(probes, kT0);
  ASSERT_FALSE(d.allowed);
  EXPECT_EQ(probes[1].outcome, Outcome::kDenied);
  EXPECT_EQ(probes[2].outcome, Outcome::kDenied);
  EXPECT_EQ(d.retry_after_seconds, 10);
  EXPECT_EQ(d.headline, 2);  // the longest wait
  EXPECT_FALSE(decide(probes, kT0 + 9 * kSec).allowed);
  EXPECT_TRUE(decide(probes, kT0 + 10 * kSec).allowed);
}

TEST(Decide, ShadowLimitNeverDenies) {
  auto shadow = ipLimit(1, 1, 1000, /*shadow=*/true);
  Probe probe;
  EXPECT_TRUE(decideOne(*shadow, ipKey(1), kT0, &probe).allowed);
  EXPECT_EQ(probe.outcome, Outcome::kAllowed);
  Decision d = decideOne(*shadow, ipKey(1), kT0, &probe);
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(probe.outcome, Outcome::kShadowDenied);
  EXPECT_EQ(d.headline, -1);  // shadow limits are not advertised
  EXPECT_EQ(shadow->decisions(Outcome::kShadowDenied), 1U);
  EXPECT_EQ(shadow->decisions(Outcome::kAllowed), 1U);
  EXPECT_EQ(shadow->decisions(Outcome::kDenied), 0U);
}

TEST(Decide, ShadowConsumesOnlyWhenTheRequestIsAdmitted) {
  auto shadow = ipLimit(1, 5, 1000, /*shadow=*/true);
  auto enforcing = globalLimit(1, 1);
  std::array<Probe, 2> probes{Probe{shadow.get(), ipKey(1)}, Probe{enforcing.get()}};
  ASSERT_TRUE(decide(probes, kT0).allowed);
  EXPECT_EQ(shadow->peek(ipKey(1), kT0).remaining, 4);
  ASSERT_FALSE(decide(probes, kT0).allowed);
  EXPECT_EQ(probes[0].outcome, Outcome::kAllowed);
  EXPECT_EQ(shadow->peek(ipKey(1), kT0).remaining, 4);
}

TEST(Decide, ShadowDenialDoesNotDenyAlongsideEnforcingLimits) {
  auto shadow = globalLimit(1, 1, /*shadow=*/true);
  auto per_ip = ipLimit(1, 10);
  std::array<Probe, 2> probes{Probe{shadow.get()}, Probe{per_ip.get(), ipKey(1)}};
  ASSERT_TRUE(decide(probes, kT0).allowed);
  Decision d = decide(probes, kT0);
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(probes[0].outcome, Outcome::kShadowDenied);
  EXPECT_EQ(d.headline, 1);
  EXPECT_EQ(per_ip->peek(ipKey(1), kT0).remaining, 8);
}

TEST(Decide, ExemptProbeIsNotEvaluated) {
  auto per_ip = ipLimit(1, 1);
  Probe probe{per_ip.get(), ipKey(1), /*exempt=*/true};
  for (int i = 0; i < 5; ++i) {
    Decision d = decide({&probe, 1}, kT0);
    EXPECT_TRUE(d.allowed);
    EXPECT_EQ(d.headline, -1);
    EXPECT_EQ(probe.outcome, Outcome::kExempt);
  }
  EXPECT_EQ(per_ip->decisions(Outcome::kExempt), 5U);
  EXPECT_EQ(per_ip->stats().keys, 0U);  // not even tracked
}

TEST(Decide, ExemptCidrs) {
  config::LimitConfig c = limitConfig("per_ip", config::LimitScope::kIp, 1, 1);
  c.exempt.push_back(*config::parseCidr("10.0.0.0/8").value);
  auto limit = Limit::create(c, 10);
  EXPECT_TRUE(limit->exempts(*config::parseIp("10.1.2.3")));
  EXPECT_TRUE(limit->exempts(*config::parseIp("::ffff:10.1.2.3")));
  EXPECT_FALSE(limit->exempts(*config::parseIp("11.1.2.3")));
}

TEST(Decide, OverridesApplyToTheirKeyOnly) {
  config::LimitConfig c = limitConfig("per_key", config::LimitScope::kApiKey, 1, 1);
  c.overrides["partner-123"] = {config::Rate{10, 1}, 3};
  auto limit = Limit::create(c, 100);
  const client::KeyHash partner = client::hashApiKey("partner-123");
  const client::KeyHash other = client::hashApiKey("someone-else");
  EXPECT_EQ(limit->paramsFor(partner).burst, 3);
  EXPECT_EQ(limit->paramsFor(other).burst, 1);
  int partner_admitted = 0;
  int other_admitted = 0;
  for (int i = 0; i < 10; ++i) {
    partner_admitted += decideOne(*limit, partner, kT0).allowed ? 1 : 0;
    other_admitted += decideOne(*limit, other, kT0).allowed ? 1 : 0;
  }
  EXPECT_EQ(partner_admitted, 3);
  EXPECT_EQ(other_admitted, 1);
  Probe probe;
  decideOne(*limit, partner, kT0 + kSec / 10, &probe);  // 10/s: one token back
  EXPECT_EQ(probe.outcome, Outcome::kAllowed);
  EXPECT_EQ(probe.burst, 3);
}

TEST(Decide, OverrideWithoutBurstDefaultsToRateCount) {
  config::LimitConfig c = limitConfig("per_key", config::LimitScope::kApiKey, 1, 1);
  c.overrides["p"] = {config::Rate{50, 1}, 0};
  auto limit = Limit::create(c, 100);
  EXPECT_EQ(limit->paramsFor(client::hashApiKey("p")).burst, 50);
}

TEST(Decide, GlobalLimitIgnoresTheKey) {
  auto global = globalLimit(1, 2);
  EXPECT_TRUE(decideOne(*global, ipKey(1), kT0).allowed);
  EXPECT_TRUE(decideOne(*global, ipKey(2), kT0).allowed);
  EXPECT_FALSE(decideOne(*global, ipKey(3), kT0).allowed);
}

TEST(Decide, KeysHaveSeparateBuckets) {
  auto per_ip = ipLimit(1, 1);
  EXPECT_TRUE(decideOne(*per_ip, ipKey(1), kT0).allowed);
  EXPECT_FALSE(decideOne(*per_ip, ipKey(1), kT0).allowed);
  EXPECT_TRUE(decideOne(*per_ip, ipKey(2), kT0).allowed);
  EXPECT_EQ(per_ip->stats().keys, 2U);
}

TEST(Decide, ReportsPolicyAndState) {
  auto per_ip = ipLimit(20, 40);
  Probe probe;
  decideOne(*per_ip, ipKey(1), kT0, &probe);
  EXPECT_EQ(probe.burst, 40);
  EXPECT_EQ(probe.window_seconds, 2);
  EXPECT_EQ(probe.remaining, 39);
  EXPECT_EQ(probe.wait, 0);
  EXPECT_EQ(probe.full_in, kSec / 20);
}

TEST(Decide, CountsEveryOutcome) {
  auto per_ip = ipLimit(1, 2);
  for (int i = 0; i < 5; ++i) decideOne(*per_ip, ipKey(1), kT0);
  Probe exempt{per_ip.get(), ipKey(1), true};
  decide({&exempt, 1}, kT0);
  LimitStats stats = per_ip->stats();
  EXPECT_EQ(stats.decisions[static_cast<std::size_t>(Outcome::kAllowed)], 2U);
  EXPECT_EQ(stats.decisions[static_cast<std::size_t>(Outcome::kDenied)], 3U);
  EXPECT_EQ(stats.decisions[static_cast<std::size_t>(Outcome::kExempt)], 1U);
  EXPECT_EQ(outcomeName(Outcome::kShadowDenied), "shadow_denied");
}

TEST(Decide, HeadlineIsTheTightestEnforcingLimit) {
  auto a = globalLimit(1, 10);
  auto b = ipLimit(1, 3);
  auto c = Limit::create(limitConfig("per_key", config::LimitScope::kApiKey, 1, 3), 10);
  std::array<Probe, 3> probes{Probe{a.get()}, Probe{b.get(), ipKey(1)},
                              Probe{c.get(), client::hashApiKey("k")}};
  Decision d = decide(probes, kT0);
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.headline, 1);  // b and c tie at 2: first wins
}

TEST(Decide, EmptyProbeListAdmits) {
  Decision d = decide({}, kT0);
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.headline, -1);
}

TEST(Decide, TopDeniedListsTheWorstKeys) {
  auto per_ip = ipLimit(1, 1);
  for (int key = 1; key <= 5; ++key) {
    for (int i = 0; i <= key; ++i) decideOne(*per_ip, ipKey(key), kT0);  // key k: k denials
  }
  std::vector<KeyStats> top = per_ip->topDenied(3, kT0);
  ASSERT_EQ(top.size(), 3U);
  EXPECT_EQ(top[0].key, ipKey(5));
  EXPECT_EQ(top[0].denied, 5U);
  EXPECT_EQ(top[0].allowed, 1U);
  EXPECT_EQ(top[0].remaining, 0);
  EXPECT_EQ(top[1].key, ipKey(4));
  EXPECT_EQ(top[2].key, ipKey(3));
  EXPECT_EQ(client::ipFromKey(top[0].key)[15], 5);
  EXPECT_TRUE(globalLimit(1, 1)->topDenied(3, kT0).empty());
}

}  // namespace
}  // namespace sluice::limiter
