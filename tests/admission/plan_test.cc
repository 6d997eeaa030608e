// Probe planning: which bucket of each limit a request draws from, and which
// requests are answered before any bucket (400, 401).

#include "proxy/admission/plan.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "proxy/client/client_ip.h"
#include "proxy/client/key_hash.h"
#include "tests/admission/admission_test_util.h"

namespace sluice::admission {
namespace {

using test_util::loadLimits;
using test_util::viewFrom;
using test_util::withKey;

enum class Key { kNone, kClientNetwork, kTheApiKey };

struct PlanCase {
  const char* name;
  const char* limit;    // one limit named `l`, flow style
  const char* api_key;  // nullptr: no key header
  KeyKind kind;
  bool exempt;
  Key key;
};

const std::vector<PlanCase>& planCases() {
  static const std::vector<PlanCase> cases = {
      {"GlobalHasOneBucket", "{per: global, rate: 1/s}", nullptr, KeyKind::kGlobal, false,
       Key::kNone},
      {"GlobalIgnoresTheKey", "{per: global, rate: 1/s}", "k", KeyKind::kGlobal, false, Key::kNone},
      {"IpIsTheClientsNetwork", "{per: ip, rate: 1/s}", nullptr, KeyKind::kIp, false,
       Key::kClientNetwork},
      {"IpExemptHasNoBucket", "{per: ip, rate: 1/s, exempt: [10.1.0.0/16]}", nullptr, KeyKind::kIp,
       true, Key::kNone},
      {"IpExemptElsewhereStillCounts", "{per: ip, rate: 1/s, exempt: [10.2.0.0/16]}", nullptr,
       KeyKind::kIp, false, Key::kClientNetwork},
      {"ApiKeyFound", "{per: api_key, rate: 1/s}", "secret", KeyKind::kApiKey, false,
       Key::kTheApiKey},
      {"ApiKeyMissingDefaultsToIp", "{per: api_key, rate: 1/s}", nullptr, KeyKind::kIpNoKey, false,
       Key::kClientNetwork},
      {"ApiKeyMissingSkip", "{per: api_key, rate: 1/s, missing: skip}", nullptr, KeyKind::kSkip,
       false, Key::kNone},
      {"ApiKeyMissingReject", "{per: api_key, rate: 1/s, missing: reject}", nullptr,
       KeyKind::kReject, false, Key::kNone},
      {"EmptyKeyIsMissing", "{per: api_key, rate: 1/s, missing: reject}", "  ", KeyKind::kReject,
       false, Key::kNone},
      {"ExemptMissingKeyHasNoIpBucket", "{per: api_key, rate: 1/s, exempt: [10.1.2.3/32]}", nullptr,
       KeyKind::kIpNoKey, true, Key::kNone},
      {"ExemptStillDrawsItsKeysBucket", "{per: api_key, rate: 1/s, exempt: [10.1.2.3/32]}",
       "secret", KeyKind::kApiKey, true, Key::kTheApiKey},
  };
  return cases;
}

class PlanTest : public ::testing::TestWithParam<PlanCase> {};

TEST_P(PlanTest, PlansTheBucket) {
  const PlanCase& c = GetParam();
  auto cfg = loadLimits(std::string("  l: ") + c.limit + "\n", "l");
  ASSERT_TRUE(cfg);
  RequestView view = viewFrom("10.1.2.3");
  if (c.api_key != nullptr) view = withKey(view, c.api_key);
  Identity id(cfg->clients, view);
  const LimitKey k = limitKey(cfg->limits[0], id);
  EXPECT_EQ(k.kind, c.kind);
  EXPECT_EQ(k.exempt, c.exempt);
  client::KeyHash want;
  if (c.key == Key::kClientNetwork) want = client::hashIpKey(*config::parseIp("10.1.2.3"));
  if (c.key == Key::kTheApiKey) want = client::hashApiKey("secret");
  EXPECT_EQ(k.key, want);
}

INSTANTIATE_TEST_SUITE_P(Limits, PlanTest, ::testing::ValuesIn(planCases()),
                         [](const auto& param_info) { return std::string(param_info.param.name); });

TEST(Plan, LocalAnswersAre400ForAnOverlongKeyAnd401ForAMissingOne) {
  EXPECT_EQ(localAnswer(KeyKind::kKeyTooLong), 400);
  EXPECT_EQ(localAnswer(KeyKind::kReject), 401);
  for (KeyKind k :
       {KeyKind::kGlobal, KeyKind::kIp, KeyKind::kApiKey, KeyKind::kIpNoKey, KeyKind::kSkip}) {
    EXPECT_EQ(localAnswer(k), 0);
  }
}

TEST(Plan, KeyOverTheLimitIsTooLongOnlyForApiKeyLimits) {
  auto cfg = loadLimits("  k: {per: api_key, rate: 1/s}\n  i: {per: ip, rate: 1/s}\n", "k, i");
  ASSERT_TRUE(cfg);
  const std::string key(client::kMaxApiKeyBytes + 1, 'a');
  RequestView view = withKey(viewFrom("10.1.2.3"), key);
  Identity id(cfg->clients, view);
  EXPECT_EQ(limitKey(cfg->limits[0], id).kind, KeyKind::kKeyTooLong);
  EXPECT_EQ(limitKey(cfg->limits[1], id).kind, KeyKind::kIp);
}

TEST(Plan, KeyFromTheQueryWhenTheHeaderIsAbsent) {
  auto cfg = loadLimits("  k: {per: api_key, rate: 1/s}\n", "k",
                        "clients:\n  api_key: {query: api_key}\n");
  ASSERT_TRUE(cfg);
  RequestView view = viewFrom("10.1.2.3");
  view.query = "x=1&api_key=from%20query";
  Identity id(cfg->clients, view);
  const LimitKey k = limitKey(cfg->limits[0], id);
  EXPECT_EQ(k.kind, KeyKind::kApiKey);
  EXPECT_EQ(k.key, client::hashApiKey("from query"));
}

TEST(Plan, TrustedPeerGroupsByTheForwardedClientsNetwork) {
  auto cfg = loadLimits("  i: {per: ip, rate: 1/s}\n", "i",
                        "clients:\n  trusted_proxies: [10.0.0.0/8]\n  ipv4_prefix: 24\n");
  ASSERT_TRUE(cfg);
  RequestView view = viewFrom("10.9.9.9");
  view.xff = "198.51.100.77, 10.0.0.5";
  Identity id(cfg->clients, view);
  EXPECT_EQ(config::formatIp(id.clientIp().ip), "198.51.100.77");
  EXPECT_EQ(limitKey(cfg->limits[0], id).key, client::hashIpKey(*config::parseIp("198.51.100.0")));
}

TEST(Plan, UntrustedPeerIsTheClientWhateverItForwards) {
  auto cfg = loadLimits("  i: {per: ip, rate: 1/s}\n", "i");
  ASSERT_TRUE(cfg);
  RequestView view = viewFrom("192.0.2.1");
  view.xff = "198.51.100.77";
  Identity id(cfg->clients, view);
  EXPECT_EQ(limitKey(cfg->limits[0], id).key, client::hashIpKey(*config::parseIp("192.0.2.1")));
}

}  // namespace
}  // namespace sluice::admission
