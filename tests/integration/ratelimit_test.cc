// Rate limiting through the real sluice binary in front of the demo upstream
// (SPEC §3 client identity and token buckets, §4 the 429 answer). Every limit
// here refills at 1/m unless the test is about waiting, so no token comes back
// while a test runs and each count is exact.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "tests/integration/harness.h"
#include "tests/integration/prom_scrape.h"

namespace sluice::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr std::string_view kQuotaExceeded =
    R"("type":"https://iana.org/assignments/http-problem-types#quota-exceeded")";

// One request on a fresh connection whose local end is bound to `source_ip`
// (empty: the default 127.0.0.1); the connection is closed afterwards.
std::optional<Response> getFrom(int port, std::string_view path, std::string_view source_ip = {},
                                const Headers& headers = {}) {
  Deadline deadline = deadlineIn(seconds(10));
  HttpConn conn(port, source_ip, "127.0.0.1", deadline);
  if (!conn.connected() || !conn.send(requestText("GET", path, port, headers), deadline)) {
    return std::nullopt;
  }
  return conn.readResponse(deadline);
}

// The integer value of header `name`, or -1 when absent or not a number.
long long headerNumber(const Response& r, std::string_view name) {
  std::string v = r.header(name);
  if (v.empty() || v.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stoll(v);
}

class RateLimitTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(upstream_.start()); }

  // Starts sluice (two workers, upstream `demo`) with `rest`: the limits:,
  // routes:, clients: and limiter: blocks of the file.
  ::testing::AssertionResult startProxy(std::string_view rest) {
    return sluice_.start(twoWorkerConfig(upstream_.port(), rest));
  }

  std::optional<Response> get(std::string_view path, std::string_view source_ip = {},
                              const Headers& headers = {}) {
    return getFrom(sluice_.port(), path, source_ip, headers);
  }

  // The status of GET `path` (0 when no response arrived).
  int status(std::string_view path, std::string_view source_ip = {}, const Headers& headers = {}) {
    auto r = get(path, source_ip, headers);
    return r ? r->status : 0;
  }

  // The statuses of `n` GET `path` in a row.
  std::vector<int> statuses(int n, std::string_view path, std::string_view source_ip = {},
                            const Headers& headers = {}) {
    std::vector<int> out;
    for (int i = 0; i < n; ++i) out.push_back(status(path, source_ip, headers));
    return out;
  }

  // sluice_ratelimit_decisions_total{limit, decision}; -1 when absent.
  double decisions(std::string_view limit, std::string_view decision) {
    return scrapeValue(sluice_.adminPort(), "sluice_ratelimit_decisions_total",
                       {{"limit", std::string(limit)}, {"decision", std::string(decision)}})
        .value_or(-1);
  }

  DemoUpstream upstream_;
  Sluice sluice_;
};

constexpr std::string_view kPerIpBurst2 =
    "limits:\n"
    "  per_ip: {per: ip, rate: 1/m, burst: 2}\n"
    "routes:\n"
    "  - path_prefix: /\n"
    "    upstream: demo\n"
    "    limits: [per_ip]\n";

TEST_F(RateLimitTest, PerIpBucketsAreKeyedBySourceAddress) {
  ASSERT_TRUE(startProxy(kPerIpBurst2));
  EXPECT_THAT(statuses(3, "/", "127.0.0.2"), ElementsAre(200, 200, 429));
  EXPECT_EQ(status("/", "127.0.0.3"), 200) << "127.0.0.3 must have its own bucket";
  EXPECT_EQ(status("/", "127.0.0.2"), 429);
}

TEST_F(RateLimitTest, AllowedResponsesCarryNoRateLimitFieldsByDefault) {
  ASSERT_TRUE(startProxy(kPerIpBurst2));
  auto r = get("/", "127.0.0.2");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_FALSE(r->hasHeader("RateLimit"));
  EXPECT_FALSE(r->hasHeader("RateLimit-Policy"));
  EXPECT_FALSE(r->hasHeader("X-RateLimit-Remaining"));
}

constexpr std::string_view kTrustedProxy =
    "clients:\n"
    "  trusted_proxies: [127.0.0.2/32]\n"
    "limits:\n"
    "  per_ip: {per: ip, rate: 1/m, burst: 2}\n"
    "routes:\n"
    "  - path_prefix: /\n"
    "    upstream: demo\n"
    "    limits: [per_ip]\n";

TEST_F(RateLimitTest, ForwardedForFromTrustedProxyNamesTheClient) {
  ASSERT_TRUE(startProxy(kTrustedProxy));
  const Headers client1 = {{"X-Forwarded-For", "10.0.0.1"}};
  EXPECT_THAT(statuses(3, "/", "127.0.0.2", client1), ElementsAre(200, 200, 429));
  EXPECT_EQ(status("/", "127.0.0.2", {{"X-Forwarded-For", "10.0.0.2"}}), 200)
      << "another client behind the same proxy has its own bucket";
  // Walked from the right: the first untrusted address is the client.
  EXPECT_EQ(status("/", "127.0.0.2", {{"X-Forwarded-For", "10.0.0.9, 10.0.0.1"}}), 429);
  EXPECT_EQ(status("/", "127.0.0.2", {{"X-Forwarded-For", "10.0.0.1, 10.0.0.9"}}), 200);
}

TEST_F(RateLimitTest, ForwardedForFromUntrustedPeerIsIgnored) {
  ASSERT_TRUE(startProxy(kTrustedProxy));
  const Headers client1 = {{"X-Forwarded-For", "10.0.0.1"}};
  EXPECT_THAT(statuses(2, "/", "127.0.0.2", client1), ElementsAre(200, 200));
  // 127.0.0.3 is not trusted: it is keyed as itself, whatever it claims.
  EXPECT_THAT(statuses(3, "/", "127.0.0.3", client1), ElementsAre(200, 200, 429));
  EXPECT_EQ(status("/", "127.0.0.3", {{"X-Forwarded-For", "10.0.0.7"}}), 429);
}

constexpr std::string_view kPerKey =
    "limits:\n"
    "  per_key:\n"
    "    per: api_key\n"
    "    rate: 1/m\n"
    "    burst: 2\n"
    "    overrides:\n"
    "      partner-123: {rate: 1/m, burst: 5}\n"
    "routes:\n"
    "  - path_prefix: /\n"
    "    upstream: demo\n"
    "    limits: [per_key]\n";

TEST_F(RateLimitTest, EachApiKeyHasItsOwnBucket) {
  ASSERT_TRUE(startProxy(kPerKey));
  EXPECT_THAT(statuses(3, "/", {}, {{"X-API-Key", "alpha"}}), ElementsAre(200, 200, 429));
  EXPECT_EQ(status("/", {}, {{"X-API-Key", "beta"}}), 200);
  EXPECT_EQ(status("/", {}, {{"X-API-Key", "alpha"}}), 429);
}

TEST_F(RateLimitTest, OverrideGivesItsKeyABiggerBurst) {
  ASSERT_TRUE(startProxy(kPerKey));
  const Headers partner = {{"X-API-Key", "partner-123"}};
  EXPECT_THAT(statuses(5, "/", {}, partner), ElementsAre(200, 200, 200, 200, 200));
  auto denied = get("/", {}, partner);
  ASSERT_TRUE(denied);
  EXPECT_EQ(denied->status, 429);
  EXPECT_EQ(denied->header("RateLimit-Policy"), "\"per_key\";q=5;w=300");
  EXPECT_THAT(statuses(3, "/", {}, {{"X-API-Key", "ordinary"}}), ElementsAre(200, 200, 429));
}

TEST_F(RateLimitTest, MissingKeyRejectAnswers401) {
  ASSERT_TRUE(
      startProxy("limits:\n"
                 "  per_key: {per: api_key, rate: 1/m, burst: 5, missing: reject}\n"
                 "routes:\n"
                 "  - path_prefix: /\n"
                 "    upstream: demo\n"
                 "    limits: [per_key]\n"));
  ASSERT_TRUE(upstream_.reset());
  auto r = get("/");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(r->header("Content-Type"), "application/problem+json");
  EXPECT_THAT(r->body, HasSubstr("\"status\":401"));
  EXPECT_EQ(status("/", {}, {{"X-API-Key", "k1"}}), 200);
  auto stats = upstream_.stats();
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->requests, 1) << "the 401 must not be forwarded";
}

TEST_F(RateLimitTest, MissingKeySkipLeavesKeylessRequestsUnlimited) {
  ASSERT_TRUE(
      startProxy("limits:\n"
                 "  per_key: {per: api_key, rate: 1/m, burst: 1, missing: skip}\n"
                 "routes:\n"
                 "  - path_prefix: /\n"
                 "    upstream: demo\n"
                 "    limits: [per_key]\n"));
  EXPECT_THAT(statuses(4, "/"), ElementsAre(200, 200, 200, 200));
  EXPECT_THAT(statuses(2, "/", {}, {{"X-API-Key", "k1"}}), ElementsAre(200, 429));
}

TEST_F(RateLimitTest, ApiKeyIsReadFromTheConfiguredQueryParameter) {
  ASSERT_TRUE(
      startProxy("clients:\n"
                 "  api_key: {query: api_key}\n"
                 "limits:\n"
                 "  per_key: {per: api_key, rate: 1/m, burst: 1, missing: reject}\n"
                 "routes:\n"
                 "  - path_prefix: /\n"
                 "    upstream: demo\n"
                 "    limits: [per_key]\n"));
  EXPECT_EQ(status("/"), 401);
  EXPECT_EQ(status("/?api_key=q1"), 200);
  EXPECT_EQ(status("/?api_key=q1"), 429);
  EXPECT_EQ(status("/?x=1&api_key=q2"), 200);
  EXPECT_EQ(status("/", {}, {{"X-API-Key", "q1"}}), 429) << "header and query name one key";
}

TEST_F(RateLimitTest, ApiKeyOver256BytesIs400) {
  ASSERT_TRUE(
      startProxy("clients:\n"
                 "  api_key: {query: api_key}\n"
                 "limits:\n"
                 "  per_key: {per: api_key, rate: 1/m, burst: 5}\n"
                 "routes:\n"
                 "  - path_prefix: /\n"
                 "    upstream: demo\n"
                 "    limits: [per_key]\n"));
  ASSERT_TRUE(upstream_.reset());
  EXPECT_EQ(status("/", {}, {{"X-API-Key", std::string(256, 'k')}}), 200);
  auto too_long = get("/", {}, {{"X-API-Key", std::string(257, 'k')}});
  ASSERT_TRUE(too_long);
  EXPECT_EQ(too_long->status, 400);
  EXPECT_EQ(too_long->header("Connection"), "close");
  EXPECT_EQ(status("/?api_key=" + std::string(257, 'q')), 400);
  auto stats = upstream_.stats();
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->requests, 1);
}

TEST_F(RateLimitTest, TooManyRequestsCarriesRetryAfterRateLimitFieldsAndProblem) {
  ASSERT_TRUE(startProxy(kPerIpBurst2));
  EXPECT_THAT(statuses(2, "/"), ElementsAre(200, 200));
  auto r = get("/");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 429);
  EXPECT_EQ(r->reason, "Too Many Requests");
  // The next token is 60 s after the first request; the test took well under 5 s.
  long long retry_after = headerNumber(*r, "Retry-After");
  EXPECT_GE(retry_after, 55);
  EXPECT_LE(retry_after, 60);
  EXPECT_EQ(r->header("RateLimit-Policy"), "\"per_ip\";q=2;w=120");
  EXPECT_EQ(r->header("RateLimit"), "\"per_ip\";r=0;t=" + std::to_string(retry_after));
  EXPECT_EQ(r->header("Content-Type"), "application/problem+json");
  EXPECT_EQ(r->header("Content-Length"), std::to_string(r->body.size()));
  EXPECT_THAT(r->body, HasSubstr(kQuotaExceeded));
  EXPECT_THAT(r->body, HasSubstr("\"violated-policies\":[\"per_ip\"]"));
  EXPECT_THAT(r->body, HasSubstr("\"status\":429"));
  EXPECT_THAT(r->body, StartsWith("{"));
  EXPECT_EQ(r->body.find('\n'), r->body.size() - 1) << "one line";
}

TEST_F(RateLimitTest, ClientWaitingRetryAfterIsAdmitted) {
  ASSERT_TRUE(
      startProxy("limits:\n"
                 "  per_ip: {per: ip, rate: 1/s, burst: 1}\n"
                 "routes:\n"
                 "  - path_prefix: /\n"
                 "    upstream: demo\n"
                 "    limits: [per_ip]\n"));
  EXPECT_EQ(status("/"), 200);
  auto denied = get("/");
  const auto received = Clock::now();
  ASSERT_TRUE(denied);
  ASSERT_EQ(denied->status, 429);
  long long retry_after = headerNumber(*denied, "Retry-After");
  ASSERT_GE(retry_after, 1);
  EXPECT_EQ(retry_after, 1);
  const auto admitted_at = received + seconds(retry_after);
  ASSERT_TRUE(
      waitUntil([&] { return Clock::now() >= admitted_at; }, admitted_at + milliseconds(100)));
  EXPECT_EQ(status("/"), 200) << "a client that waited Retry-After was denied again";
}

TEST_F(RateLimitTest, XRateLimitStyleNamesLimitRemainingAndReset) {
  ASSERT_TRUE(
      startProxy("limiter:\n"
                 "  header_style: x-ratelimit\n" +
                 std::string(kPerIpBurst2)));
  EXPECT_THAT(statuses(2, "/"), ElementsAre(200, 200));
  auto r = get("/");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 429);
  EXPECT_EQ(r->header("X-RateLimit-Limit"), "2");
  EXPECT_EQ(r->header("X-RateLimit-Remaining"), "0");
  // Seconds until the bucket is full again (README): two tokens at 1/m.
  long long reset = headerNumber(*r, "X-RateLimit-Reset");
  EXPECT_GE(reset, 115);
  EXPECT_LE(reset, 120);
  EXPECT_GE(headerNumber(*r, "Retry-After"), 1);
  EXPECT_FALSE(r->hasHeader("RateLimit-Policy"));
  EXPECT_FALSE(r->hasHeader("RateLimit"));
}

TEST_F(RateLimitTest, ResponseHeadersPutRateLimitFieldsOnAllowedResponses) {
  ASSERT_TRUE(
      startProxy("limiter:\n"
                 "  response_headers: true\n"
                 "limits:\n"
                 "  per_ip: {per: ip, rate: 1/m, burst: 3}\n"
                 "routes:\n"
                 "  - path_prefix: /\n"
                 "    upstream: demo\n"
                 "    limits: [per_ip]\n"));
  auto first = get("/");
  ASSERT_TRUE(first);
  EXPECT_EQ(first->status, 200);
  EXPECT_EQ(first->body, "hello from upstream\n");
  EXPECT_EQ(first->header("RateLimit-Policy"), "\"per_ip\";q=3;w=180");
  EXPECT_EQ(first->header("RateLimit"), "\"per_ip\";r=2;t=60");
  auto second = get("/");
  ASSERT_TRUE(second);
  EXPECT_EQ(second->status, 200);
  EXPECT_THAT(second->header("RateLimit"), StartsWith("\"per_ip\";r=1;t="));
}

TEST_F(RateLimitTest, DeniedRequestConsumesNoTokensFromOtherLimits) {
  ASSERT_TRUE(
      startProxy("limiter:\n"
                 "  response_headers: true\n"
                 "limits:\n"
                 "  a: {per: ip, rate: 1/m, burst: 3}\n"
                 "  b: {per: ip, rate: 1/m, burst: 1}\n"
                 "routes:\n"
                 "  - path_prefix: /both\n"
                 "    upstream: demo\n"
                 "    limits: [a, b]\n"
                 "  - path_prefix: /\n"
                 "    upstream: demo\n"
                 "    limits: [a]\n"));
  EXPECT_EQ(status("/both"), 200);  // a: 2 left, b: 0 left
  for (int i = 0; i < 3; ++i) {
    auto r = get("/both");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 429);
    EXPECT_THAT(r->body, HasSubstr("\"violated-policies\":[\"b\"]"));
    EXPECT_EQ(r->header("RateLimit-Policy"), "\"b\";q=1;w=60");
    EXPECT_EQ(r->headerCount("RateLimit"), 1u);
  }
  // Route / shares limit a: exactly the 2 tokens the admitted request left.
  auto r1 = get("/");
  ASSERT_TRUE(r1);
  EXPECT_EQ(r1->status, 200);
  EXPECT_THAT(r1->header("RateLimit"), StartsWith("\"a\";r=1"));
  EXPECT_THAT(statuses(2, "/"), ElementsAre(200, 429));
}

TEST_F(RateLimitTest, ShadowLimitNeverDeniesButCountsShadowDenied) {
  ASSERT_TRUE(
      startProxy("limits:\n"
                 "  trial: {per: ip, rate: 1/m, burst: 1, shadow: true}\n"
                 "routes:\n"
                 "  - path_prefix: /\n"
                 "    upstream: demo\n"
                 "    limits: [trial]\n"));
  EXPECT_THAT(statuses(5, "/"), ElementsAre(200, 200, 200, 200, 200));
  EXPECT_EQ(decisions("trial", "allowed"), 1);
  EXPECT_EQ(decisions("trial", "shadow_denied"), 4);
  EXPECT_EQ(decisions("trial", "denied"), 0);
}

TEST_F(RateLimitTest, ExemptClientSkipsTheLimit) {
  ASSERT_TRUE(
      startProxy("limits:\n"
                 "  per_ip: {per: ip, rate: 1/m, burst: 1, exempt: [127.0.0.2/32]}\n"
                 "routes:\n"
                 "  - path_prefix: /\n"
                 "    upstream: demo\n"
                 "    limits: [per_ip]\n"));
  EXPECT_THAT(statuses(4, "/", "127.0.0.2"), ElementsAre(200, 200, 200, 200));
  EXPECT_THAT(statuses(2, "/", "127.0.0.3"), ElementsAre(200, 429));
  EXPECT_EQ(decisions("per_ip", "exempt"), 4);
  EXPECT_EQ(decisions("per_ip", "allowed"), 1);
  EXPECT_EQ(decisions("per_ip", "denied"), 1);
}

TEST_F(RateLimitTest, DeniedRequestNeverReachesTheUpstream) {
  ASSERT_TRUE(startProxy(kPerIpBurst2));
  ASSERT_TRUE(upstream_.reset());
  EXPECT_THAT(statuses(6, "/"), ElementsAre(200, 200, 429, 429, 429, 429));
  auto stats = upstream_.stats();
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->requests, 2);
}

TEST_F(RateLimitTest, PipelinedBurstLargerThanTheBufferGetsEveryAnswer) {
  // 500 pipelined requests in one write, about 3x the connection buffer, all
  // answered locally: the proxy must come back for the bytes still in the
  // socket after each full buffer, with nothing new arriving to wake it.
  ASSERT_TRUE(startProxy(kPerIpBurst2));
  ASSERT_TRUE(upstream_.reset());
  const Headers padding = {{"X-Padding", std::string(200, 'p')}};
  std::string burst;
  constexpr int kRequests = 500;
  for (int i = 0; i < kRequests; ++i) burst += requestText("GET", "/", sluice_.port(), padding);
  ASSERT_GT(burst.size(), 3u * (16 * 1024 + 16 * 1024));
  HttpConn conn(sluice_.port());
  ASSERT_TRUE(conn.connected()) << conn.error();
  ASSERT_TRUE(conn.send(burst));
  std::vector<int> got;
  for (int i = 0; i < kRequests; ++i) {
    auto r = conn.readResponse(deadlineIn(seconds(10)));
    ASSERT_TRUE(r) << "answer " << i << " of " << kRequests << ": " << conn.error();
    ASSERT_TRUE(r->complete) << r->error;
    got.push_back(r->status);
  }
  EXPECT_EQ(std::count(got.begin(), got.end(), 200), 2);
  EXPECT_EQ(std::count(got.begin(), got.end(), 429), kRequests - 2);
  EXPECT_EQ(conn.buffered(), 0u);
  auto stats = upstream_.stats();
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->requests, 2);
  // The connection is still good for another request.
  ASSERT_TRUE(conn.send(requestText("GET", "/", sluice_.port())));
  auto last = conn.readResponse(deadlineIn(seconds(5)));
  ASSERT_TRUE(last) << conn.error();
  EXPECT_EQ(last->status, 429);
}

}  // namespace
}  // namespace sluice::testing
