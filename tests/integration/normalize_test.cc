// Limits that cannot be walked around (SPEC §12) through the real sluice
// binary in front of the demo upstream: other spellings of a limited path,
// Host spellings, and ambiguous client identity. `?echo=1` makes the demo
// upstream answer with the request head it received, so each test sees the
// request line that reached the upstream. Every limit refills at 1/m: no
// token comes back while a test runs.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

#include "tests/integration/harness.h"

namespace sluice::testing {
namespace {

using std::chrono::seconds;

// /admin/ has a one-request budget; everything else goes to `/` unlimited.
constexpr std::string_view kAdminLimited =
    "limits:\n"
    "  admin_tight: {per: global, rate: 1/m, burst: 1}\n"
    "routes:\n"
    "  - name: admin\n"
    "    path_prefix: /admin/\n"
    "    upstream: demo\n"
    "    limits: [admin_tight]\n"
    "  - name: site\n"
    "    path_prefix: /\n"
    "    upstream: demo\n";

class NormalizeTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(upstream_.start()); }

  // Two workers, upstream `demo`, `server_extra` under server:, then `rest`.
  ::testing::AssertionResult startProxy(std::string_view rest, std::string_view server_extra = "") {
    std::string yaml = twoWorkerConfig(upstream_.port(), rest);
    const std::string anchor = "  workers: 2\n";
    yaml.insert(yaml.find(anchor) + anchor.size(), server_extra);
    return sluice_.start(yaml);
  }

  // One request on a fresh connection from `source_ip` (empty: 127.0.0.1).
  std::optional<Response> get(std::string_view target, const Headers& headers = {},
                              std::string_view source_ip = {}) {
    Deadline deadline = deadlineIn(seconds(10));
    HttpConn conn(sluice_.port(), source_ip, "127.0.0.1", deadline);
    if (!conn.connected() || !conn.send(requestText("GET", target, sluice_.port(), headers))) {
      return std::nullopt;
    }
    return conn.readResponse(deadline);
  }

  int status(std::string_view target, const Headers& headers = {},
             std::string_view source_ip = {}) {
    auto r = get(target, headers, source_ip);
    return r ? r->status : 0;
  }

  // GET `target` (which asks the demo upstream to echo); the request line the
  // upstream received, or "(status N)" when the answer was not a 200.
  std::string upstreamLine(std::string_view target) {
    auto r = get(target);
    if (!r) return "(no response)";
    if (r->status != 200) return "(status " + std::to_string(r->status) + ")";
    return r->body.substr(0, r->body.find("\r\n"));
  }

  DemoUpstream upstream_;
  Sluice sluice_;
};

// ---- Other spellings of /admin/x -------------------------------------------------------

class AdminSpellingTest : public NormalizeTest,
                          public ::testing::WithParamInterface<const char*> {};

TEST_P(AdminSpellingTest, IsLimitedAsAdminAndForwardedNormalized) {
  ASSERT_TRUE(startProxy(kAdminLimited));
  const std::string spelling = GetParam();
  EXPECT_EQ(upstreamLine(spelling + "?echo=1"), "GET /admin/x?echo=1 HTTP/1.1");
  EXPECT_EQ(status(spelling), 429) << spelling << " must spend the admin budget";
  EXPECT_EQ(status("/admin/x"), 429);
}

INSTANTIATE_TEST_SUITE_P(Spellings, AdminSpellingTest,
                         ::testing::Values("//admin/x", "/./admin/x", "/x/../admin/x", "/%61dmin/x",
                                           "/%2e/admin/x", "/%2E%2E/admin/x"));

TEST_F(NormalizeTest, CanonicalSpellingSpendsTheBudgetOfEveryOther) {
  ASSERT_TRUE(startProxy(kAdminLimited));
  EXPECT_EQ(status("/admin/x"), 200);
  for (const char* spelling : {"//admin/x", "/admin/./x", "/%61%64min/x", "/admin//x"}) {
    EXPECT_EQ(status(spelling), 429) << spelling;
  }
}

// ---- Encoded slash and backslash --------------------------------------------------------

TEST_F(NormalizeTest, EncodedSlashIsForwardedEncodedAndUpperCased) {
  ASSERT_TRUE(startProxy(kAdminLimited));
  EXPECT_EQ(upstreamLine("/files/a%2fb%5cc?echo=1"), "GET /files/a%2Fb%5Cc?echo=1 HTTP/1.1");
}

TEST_F(NormalizeTest, EncodedSlashAlreadyNormalIsForwardedAsSent) {
  ASSERT_TRUE(startProxy(kAdminLimited));
  EXPECT_EQ(upstreamLine("/files/a%2Fb?echo=1"), "GET /files/a%2Fb?echo=1 HTTP/1.1");
}

TEST_F(NormalizeTest, DotSegmentsBuiltFromEncodedSlashesCannotWalkAroundAdmin) {
  ASSERT_TRUE(startProxy(kAdminLimited));
  EXPECT_EQ(upstreamLine("/public%2F..%2Fadmin%2Fx?echo=1"),
            "GET /public%2F..%2Fadmin%2Fx?echo=1 HTTP/1.1")
      << "%2F is not a separator in what goes upstream";
  EXPECT_EQ(status("/admin/x"), 429) << "routes read %2F as '/': that was an admin request";
  EXPECT_EQ(status("/%2Fadmin/y"), 429);
}

TEST_F(NormalizeTest, QueryIsForwardedUntouched) {
  ASSERT_TRUE(startProxy(kAdminLimited));
  EXPECT_EQ(upstreamLine("/site/./page?echo=1&q=%2e%2E/a//b%7e"),
            "GET /site/page?echo=1&q=%2e%2E/a//b%7e HTTP/1.1");
}

// ---- Refused paths ----------------------------------------------------------------------

TEST_F(NormalizeTest, MalformedEscapesAndEncodedNulAre400) {
  ASSERT_TRUE(startProxy(kAdminLimited));
  ASSERT_TRUE(upstream_.reset());
  for (const char* target : {"/a%00b", "/%zz", "/%4", "/admin/%0d%0a"}) {
    auto r = get(target);
    ASSERT_TRUE(r) << target;
    EXPECT_EQ(r->status, 400) << target;
    EXPECT_EQ(r->header("Content-Type"), "application/problem+json") << target;
  }
  auto stats = upstream_.stats();
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->requests, 0) << "a refused path is never forwarded";
}

// ---- normalize_path: false --------------------------------------------------------------

TEST_F(NormalizeTest, NormalizePathFalseRoutesAndForwardsTheRawPath) {
  ASSERT_TRUE(startProxy(kAdminLimited, "  normalize_path: false\n"));
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(upstreamLine("//admin/./x?echo=1"), "GET //admin/./x?echo=1 HTTP/1.1")
        << "the raw path starts with no /admin/: the unlimited route, every time";
  }
  EXPECT_EQ(upstreamLine("/%7euser/%zz?echo=1"), "GET /%7euser/%zz?echo=1 HTTP/1.1");
}

// ---- Access log -------------------------------------------------------------------------

TEST_F(NormalizeTest, AccessLogNamesTheNormalizedPath) {
  ASSERT_TRUE(startProxy(kAdminLimited, "  access_log: stderr\n"));
  EXPECT_EQ(status("/x/..//admin/%7Ex?token=1"), 200);
  auto line = sluice_.process().waitForOutput(
      Stream::kStderr, std::regex(R"(method=GET path=(\S+) status=200 .*route=(\S+))"),
      deadlineIn(seconds(5)));
  ASSERT_TRUE(line) << sluice_.stderrText();
  EXPECT_EQ(line->groups.at(0), "/admin/~x");
  EXPECT_EQ(line->groups.at(1), "admin");
}

// ---- Host -------------------------------------------------------------------------------

// Host api.example.com has a one-request budget; any other host is unlimited.
constexpr std::string_view kHostLimited =
    "limits:\n"
    "  host_tight: {per: global, rate: 1/m, burst: 1}\n"
    "routes:\n"
    "  - name: api_host\n"
    "    path_prefix: /\n"
    "    host: api.example.com\n"
    "    upstream: demo\n"
    "    limits: [host_tight]\n"
    "  - name: other\n"
    "    path_prefix: /\n"
    "    upstream: demo\n";

TEST_F(NormalizeTest, HostMatchIgnoresCaseAndPort) {
  ASSERT_TRUE(startProxy(kHostLimited));
  EXPECT_EQ(status("/", {{"Host", "API.Example.COM"}}), 200);
  EXPECT_EQ(status("/", {{"Host", "api.example.com:8080"}}), 429);
  EXPECT_EQ(status("/", {{"Host", "api.example.com"}}), 429);
}

TEST_F(NormalizeTest, HostMatchIgnoresOneTrailingDot) {
  ASSERT_TRUE(startProxy(kHostLimited));
  EXPECT_EQ(status("/", {{"Host", "api.example.com."}}), 200);
  EXPECT_EQ(status("/", {{"Host", "api.example.com"}}), 429);
  EXPECT_EQ(status("/", {{"Host", "Api.Example.Com.:443"}}), 429);
}

TEST_F(NormalizeTest, HostWithTwoTrailingDotsIsAnotherHost) {
  ASSERT_TRUE(startProxy(kHostLimited));
  EXPECT_EQ(status("/", {{"Host", "api.example.com"}}), 200);
  EXPECT_EQ(status("/", {{"Host", "api.example.com.."}}), 200);
  EXPECT_EQ(status("/", {{"Host", "api.example.com.."}}), 200);
}

// ---- Ambiguous identity -----------------------------------------------------------------

constexpr std::string_view kPerKey =
    "limits:\n"
    "  per_key: {per: api_key, rate: 1/m, burst: 5}\n"
    "routes:\n"
    "  - path_prefix: /\n"
    "    upstream: demo\n"
    "    limits: [per_key]\n";

TEST_F(NormalizeTest, TwoApiKeyFieldLinesAre400) {
  ASSERT_TRUE(startProxy(kPerKey));
  EXPECT_EQ(status("/", {{"X-API-Key", "alpha"}}), 200);
  EXPECT_EQ(status("/", {{"X-API-Key", "alpha"}, {"X-API-Key", "beta"}}), 400);
  EXPECT_EQ(status("/", {{"X-API-Key", "alpha"}, {"x-api-key", "alpha"}}), 400)
      << "the same key twice is still two field lines";
}

constexpr std::string_view kTrustedPeer =
    "clients:\n"
    "  trusted_proxies: [127.0.0.2/32]\n"
    "limits:\n"
    "  per_ip: {per: ip, rate: 1/m, burst: 1}\n"
    "routes:\n"
    "  - path_prefix: /\n"
    "    upstream: demo\n"
    "    limits: [per_ip]\n";

TEST_F(NormalizeTest, ForwardedForLinesFromATrustedPeerAreOneListInOrder) {
  ASSERT_TRUE(startProxy(kTrustedPeer));
  const Headers two_lines = {{"X-Forwarded-For", "10.0.0.1"}, {"X-Forwarded-For", "10.0.0.2"}};
  auto r = get("/?echo=1", two_lines, "127.0.0.2");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_THAT(r->body, ::testing::HasSubstr("X-Forwarded-For: 10.0.0.1, 10.0.0.2, 127.0.0.2\r\n"));
  // "10.0.0.1, 10.0.0.2" walked from the right: the client is 10.0.0.2.
  EXPECT_EQ(status("/", {{"X-Forwarded-For", "10.0.0.2"}}, "127.0.0.2"), 429);
  EXPECT_EQ(status("/", {{"X-Forwarded-For", "10.0.0.1"}}, "127.0.0.2"), 200);
}

}  // namespace
}  // namespace sluice::testing
