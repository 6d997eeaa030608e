// The limiter-backed admission, driven as the exchange drives it: one
// decide() per request, at times the test chooses.

#include "proxy/admission/limiter_admission.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "proxy/client/api_key.h"
#include "proxy/client/key_hash.h"
#include "tests/admission/admission_test_util.h"

namespace sluice::admission {
namespace {

using test_util::viewFrom;
using test_util::withKey;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr event::Nanos kT0 = 1'000'000'000'000;
constexpr event::Nanos kSecond = 1'000'000'000;

class LimiterAdmissionTest : public ::testing::Test {
 protected:
  // Loads the config and builds its admission (no store).
  bool build(std::string_view limits, std::string_view route_limits, std::string_view extra = "",
             const AdmissionContext* previous = nullptr) {
    cfg_ = test_util::loadLimits(limits, route_limits, extra);
    if (!cfg_) return false;
    admission_ = makeAdmission(*cfg_, previous, nullptr, nullptr, 1, kT0);
    route_ = compileRouteLimits(*cfg_, cfg_->routes[0]);
    return true;
  }

  AdmissionResult decide(const RequestView& view, event::Nanos now = kT0) {
    AdmissionResult out;
    admission_->decide(route_, view, now, &out);
    return out;
  }

  metrics::LimitSample sampleOf(std::string_view name) const {
    std::vector<metrics::LimitSample> all;
    admission_->sample(&all);
    for (auto& s : all) {
      if (s.name == name) return s;
    }
    ADD_FAILURE() << "no sample for " << name;
    return {};
  }

  std::shared_ptr<const config::Config> cfg_;
  std::shared_ptr<AdmissionContext> admission_;
  RouteLimits route_;
};

TEST_F(LimiterAdmissionTest, ForwardsTheBurstThenAnswers429NamingTheLimit) {
  ASSERT_TRUE(build("  per_ip: {per: ip, rate: 1/s, burst: 2}\n", "per_ip"));
  const RequestView client = viewFrom("10.1.2.3");
  EXPECT_EQ(decide(client).status, 0);
  EXPECT_EQ(decide(client).status, 0);
  const AdmissionResult denied = decide(client);
  EXPECT_EQ(denied.status, 429);
  EXPECT_THAT(denied.violated, ElementsAre("per_ip"));
  EXPECT_EQ(denied.headers,
            "Retry-After: 1\r\nRateLimit-Policy: \"per_ip\";q=2;w=2\r\n"
            "RateLimit: \"per_ip\";r=0;t=1\r\n");
  EXPECT_EQ(decide(viewFrom("10.1.2.4")).status, 0) << "another client has its own bucket";
  EXPECT_EQ(decide(client, kT0 + kSecond).status, 0) << "a token is back after a second";
  const metrics::LimitSample s = sampleOf("per_ip");
  EXPECT_EQ(s.allowed, 4u);
  EXPECT_EQ(s.denied, 1u);
  EXPECT_EQ(s.keys, 2);
}

TEST_F(LimiterAdmissionTest, AllowedResponsesCarryTheTightestLimitWhenAskedTo) {
  ASSERT_TRUE(
      build("  wide: {per: global, rate: 100/s}\n  narrow: {per: ip, rate: 1/s, burst: 3}\n",
            "wide, narrow", "limiter: {response_headers: true, header_style: x-ratelimit}\n"));
  const AdmissionResult ok = decide(viewFrom("10.1.2.3"));
  EXPECT_EQ(ok.status, 0);
  EXPECT_EQ(ok.allowed_headers,
            "X-RateLimit-Limit: 3\r\nX-RateLimit-Remaining: 2\r\nX-RateLimit-Reset: 1\r\n");
}

TEST_F(LimiterAdmissionTest, AllowedResponsesCarryNothingByDefault) {
  ASSERT_TRUE(build("  per_ip: {per: ip, rate: 1/s, burst: 3}\n", "per_ip"));
  EXPECT_EQ(decide(viewFrom("10.1.2.3")).allowed_headers, "");
}

TEST_F(LimiterAdmissionTest, MissingKeyIs401WithRejectAndUncountedWithSkip) {
  ASSERT_TRUE(
      build("  strict: {per: api_key, rate: 1/s, missing: reject}\n"
            "  lax: {per: api_key, rate: 1/s, missing: skip}\n",
            "lax, strict"));
  EXPECT_EQ(decide(viewFrom("10.1.2.3")).status, 401);
  EXPECT_EQ(sampleOf("lax").allowed, 0u) << "skip: the limit does not apply";
  EXPECT_EQ(decide(withKey(viewFrom("10.1.2.3"), "k1")).status, 0);
}

TEST_F(LimiterAdmissionTest, OverlongKeyIs400AndTakesNoToken) {
  ASSERT_TRUE(
      build("  g: {per: global, rate: 1/s, burst: 1}\n  k: {per: api_key, rate: 1/s}\n", "g, k"));
  const std::string key(client::kMaxApiKeyBytes + 1, 'x');
  EXPECT_EQ(decide(withKey(viewFrom("10.1.2.3"), key)).status, 400);
  EXPECT_EQ(decide(viewFrom("10.1.2.3")).status, 0) << "the global token is still there";
}

TEST_F(LimiterAdmissionTest, ExemptClientIsForwardedAndCountedAsExempt) {
  ASSERT_TRUE(build("  per_ip: {per: ip, rate: 1/s, burst: 1, exempt: [10.9.0.0/16]}\n", "per_ip"));
  for (int i = 0; i < 5; ++i) EXPECT_EQ(decide(viewFrom("10.9.1.1")).status, 0);
  EXPECT_EQ(sampleOf("per_ip").exempt, 5u);
  EXPECT_EQ(sampleOf("per_ip").keys, 0);
}

TEST_F(LimiterAdmissionTest, ShadowLimitCountsButNeverDenies) {
  ASSERT_TRUE(build("  s: {per: ip, rate: 1/s, burst: 1, shadow: true}\n", "s"));
  EXPECT_EQ(decide(viewFrom("10.1.2.3")).status, 0);
  EXPECT_EQ(decide(viewFrom("10.1.2.3")).status, 0);
  EXPECT_EQ(sampleOf("s").shadow_denied, 1u);
}

TEST_F(LimiterAdmissionTest, ReloadKeepsTheBucketsOfLimitsItKeeps) {
  ASSERT_TRUE(build("  per_ip: {per: ip, rate: 1/m, burst: 1}\n", "per_ip"));
  ASSERT_EQ(decide(viewFrom("10.1.2.3")).status, 0);
  const std::shared_ptr<AdmissionContext> old = admission_;
  ASSERT_TRUE(build("  per_ip: {per: ip, rate: 1/m, burst: 1}\n  other: {per: ip, rate: 1/m}\n",
                    "per_ip, other", "", old.get()));
  EXPECT_EQ(decide(viewFrom("10.1.2.3")).status, 429) << "the emptied bucket was adopted";
  const std::shared_ptr<AdmissionContext> old2 = admission_;
  ASSERT_TRUE(build("  renamed: {per: ip, rate: 1/m, burst: 1}\n", "renamed", "", old2.get()));
  EXPECT_EQ(decide(viewFrom("10.1.2.3")).status, 0) << "a new limit starts full";
}

TEST_F(LimiterAdmissionTest, TopKeysShowsNetworksAndFingerprintsNeverKeys) {
  ASSERT_TRUE(
      build("  k: {per: api_key, rate: 1/m, burst: 1}\n", "k", "clients: {ipv4_prefix: 24}\n"));
  decide(withKey(viewFrom("10.1.2.3"), "secret-key"));
  decide(withKey(viewFrom("10.1.2.3"), "secret-key"));  // denied
  decide(viewFrom("10.7.7.7"));                         // no key: the client's network
  std::string json;
  ASSERT_TRUE(admission_->topKeys("k", 10, kT0, &json));
  EXPECT_THAT(json, HasSubstr("\"limit\":\"k\",\"per\":\"api_key\""));
  EXPECT_THAT(json, HasSubstr("\"key\":\"" + client::fingerprint("secret-key") +
                              "\",\"tokens\":0,\"allowed\":1,\"denied\":1"));
  EXPECT_THAT(json, HasSubstr("\"key\":\"10.7.7.0/24\""));
  EXPECT_EQ(json.find("secret-key"), std::string::npos);
  EXPECT_FALSE(admission_->topKeys("nope", 10, kT0, &json));
}

TEST_F(LimiterAdmissionTest, SweepDropsBucketsThatRefilled) {
  ASSERT_TRUE(build("  per_ip: {per: ip, rate: 10/s, burst: 10}\n", "per_ip"));
  for (int i = 0; i < 50; ++i) {
    decide(viewFrom("10.1.0." + std::to_string(i)));
  }
  ASSERT_EQ(sampleOf("per_ip").keys, 50);
  admission_->sweep(kT0 + 60 * kSecond);
  EXPECT_EQ(sampleOf("per_ip").keys, 0);
  EXPECT_EQ(sampleOf("per_ip").swept, 50u);
}

}  // namespace
}  // namespace sluice::admission
