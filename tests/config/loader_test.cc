#include "proxy/config/loader.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

#include "tests/config/loader_test_util.h"

namespace sluice::config {
namespace {

using testing::expectOnlyError;
using testing::kMinimalYaml;
using testing::load;
using testing::yaml;

TEST(Loader, MinimalConfigLoads) {
  LoadResult result = load(kMinimalYaml);
  ASSERT_TRUE(result.ok()) << testing::describe(result.errors);
  ASSERT_NE(result.config, nullptr);
  EXPECT_EQ(result.config->file, "test.yaml");
  ASSERT_EQ(result.config->upstreams.size(), 1u);
  EXPECT_EQ(result.config->upstreams[0].name, "api");
  EXPECT_EQ(result.config->findUpstream("api"), &result.config->upstreams[0]);
  EXPECT_EQ(result.config->findUpstream("web"), nullptr);
  EXPECT_EQ(result.config->findLimit("api"), nullptr);
}

TEST(ConfigError, FormatsFileLineColumn) {
  EXPECT_EQ((ConfigError{"a.yaml", 3, 7, "bad"}).toString(), "a.yaml:3:7: bad");
  EXPECT_EQ((ConfigError{"a.yaml", 0, 0, "cannot open"}).toString(), "a.yaml: cannot open");
}

// ---- required sections ----

TEST(Required, MissingUpstreamsIsReportedAtTheDocumentStart) {
  expectOnlyError(yaml(R"(
# no upstreams here
routes:
  - path_prefix: /
    upstream: api
)"),
                  1, 1, "missing required key 'upstreams'");
}

TEST(Required, MissingRoutesIsReportedAtTheDocumentStart) {
  expectOnlyError(yaml(R"(
upstreams:
  api:
    targets: [127.0.0.1:9001]
)"),
                  1, 1, "missing required key 'routes'");
}

TEST(Required, EmptyFileLacksBothSections) {
  LoadResult result = load("");
  ASSERT_EQ(result.errors.size(), 2u) << testing::describe(result.errors);
  for (const ConfigError& e : result.errors) {
    EXPECT_EQ(e.line, 1);
    EXPECT_EQ(e.column, 1);
  }
}

TEST(Required, EmptyUpstreams) {
  expectOnlyError(yaml(R"(
upstreams: {}
routes:
  - path_prefix: /
    upstream: api
)"),
                  1, 12, "at least one upstream");
}

TEST(Required, EmptyRoutes) {
  expectOnlyError(yaml(R"(
upstreams:
  api:
    targets: [127.0.0.1:9001]
routes: []
)"),
                  4, 9, "at least one route");
}

TEST(Required, MissingTargetsPointsAtTheUpstreamMap) {
  expectOnlyError(yaml(R"(
upstreams:
  api:
    max_pending: 10
routes:
  - path_prefix: /
    upstream: api
)"),
                  3, 5, "missing required key 'targets' in upstreams.api");
}

TEST(Required, EmptyTargets) {
  expectOnlyError(yaml(R"(
upstreams:
  api:
    targets: []
routes:
  - path_prefix: /
    upstream: api
)"),
                  3, 14, "at least one target");
}

TEST(Required, MissingRateInLimit) {
  expectOnlyError(yaml(R"(
upstreams:
  api:
    targets: [127.0.0.1:9001]
limits:
  per_ip:
    per: ip
routes:
  - path_prefix: /
    upstream: api
)"),
                  6, 5, "missing required key 'rate' in limits.per_ip");
}

TEST(Required, MissingUpstreamInRoutePointsAtTheRoute) {
  expectOnlyError(yaml(R"(
upstreams:
  api:
    targets: [127.0.0.1:9001]
routes:
  - path_prefix: /
)"),
                  5, 5, "missing required key 'upstream' in routes[0]");
}

TEST(Required, MissingPathPrefix) {
  expectOnlyError(yaml(R"(
upstreams:
  api:
    targets: [127.0.0.1:9001]
routes:
  - upstream: api
)"),
                  5, 5, "missing required key 'path_prefix' in routes[0]");
}

// ---- references ----

TEST(References, RouteNamingUnknownUpstream) {
  expectOnlyError(yaml(R"(
upstreams:
  api:
    targets: [127.0.0.1:9001]
routes:
  - path_prefix: /
    upstream: apii
)"),
                  6, 15, "unknown upstream 'apii' (did you mean 'api'?)");
}

TEST(References, RouteNamingUnknownLimit) {
  expectOnlyError(yaml(R"(
upstreams:
  api:
    targets: [127.0.0.1:9001]
limits:
  per_ip:
    rate: 10/s
routes:
  - path_prefix: /
    upstream: api
    limits: [per_ip, global]
)"),
                  10, 22, "unknown limit 'global'");
}

TEST(References, LimitListedTwiceOnARoute) {
  expectOnlyError(yaml(R"(
upstreams:
  api:
    targets: [127.0.0.1:9001]
limits:
  per_ip:
    rate: 10/s
routes:
  - path_prefix: /
    upstream: api
    limits: [per_ip, per_ip]
)"),
                  10, 22, "listed twice");
}

TEST(References, StoreRedisNeedsRedisBlock) {
  expectOnlyError(yaml(R"(
upstreams:
  api:
    targets: [127.0.0.1:9001]
limits:
  shared:
    rate: 10/s
    store: redis
routes:
  - path_prefix: /
    upstream: api
)"),
                  7, 12, "redis");
}

TEST(References, StoreRedisWithRedisBlockLoads) {
  LoadResult result = load(std::string(kMinimalYaml) +
                           "limits:\n  shared:\n    rate: 10/s\n    store: redis\nredis: {}\n");
  ASSERT_TRUE(result.ok()) << testing::describe(result.errors);
  EXPECT_EQ(result.config->limits[0].store, StoreKind::kRedis);
  ASSERT_TRUE(result.config->redis.has_value());
}

// ---- limit values ----

// The minimal file plus a limits block whose single limit holds `body`
// (lines 7 onwards, indented by four spaces).
std::string withLimit(const std::string& body) {
  return std::string(kMinimalYaml) + "limits:\n  l:\n" + body;
}

TEST(Limits, RateZero) {
  expectOnlyError(withLimit("    rate: 0/s\n"), 9, 11, "rate must be above zero");
}

TEST(Limits, RateGarbage) {
  expectOnlyError(withLimit("    rate: fast\n"), 9, 11, "invalid rate 'fast'");
}

TEST(Limits, BurstBelowOne) {
  expectOnlyError(withLimit("    rate: 1/s\n    burst: 0.5\n"), 10, 12, "burst must be at least 1");
}

TEST(Limits, BurstNotANumber) {
  expectOnlyError(withLimit("    rate: 1/s\n    burst: lots\n"), 10, 12, "expected a number");
}

TEST(Limits, PerMustBeKnown) {
  expectOnlyError(withLimit("    rate: 1/s\n    per: user\n"), 10, 10,
                  "expected one of global, ip, api_key, got 'user'");
}

TEST(Limits, MissingMustBeKnown) {
  expectOnlyError(withLimit("    per: api_key\n    rate: 1/s\n    missing: deny\n"), 11, 14,
                  "expected one of ip, skip, reject");
}

TEST(Limits, StoreMustBeKnown) {
  expectOnlyError(withLimit("    rate: 1/s\n    store: memcached\n"), 10, 12,
                  "expected one of local, redis");
}

TEST(Limits, OnStoreErrorMustBeKnown) {
  expectOnlyError(withLimit("    rate: 1/s\n    on_store_error: retry\n"), 10, 21,
                  "expected one of local, allow, deny");
}

TEST(Limits, ShadowMustBeBoolean) {
  expectOnlyError(withLimit("    rate: 1/s\n    shadow: maybe\n"), 10, 13,
                  "expected true or false, got 'maybe'");
}

TEST(Limits, ExemptCidrOutOfRange) {
  expectOnlyError(withLimit("    rate: 1/s\n    exempt: [10.0.0.0/8, 10.0.0.0/33]\n"), 10, 26,
                  "out of range");
}

TEST(Limits, ExemptMustBeAList) {
  expectOnlyError(withLimit("    rate: 1/s\n    exempt: 10.0.0.0/8\n"), 10, 13, "expected a list");
}

TEST(Limits, MissingOnlyForApiKeyLimits) {
  expectOnlyError(withLimit("    per: ip\n    rate: 1/s\n    missing: skip\n"), 11, 5,
                  "only applies to limits with per: api_key");
}

TEST(Limits, OverridesOnlyForApiKeyLimits) {
  expectOnlyError(withLimit("    rate: 1/s\n    overrides:\n      k: { rate: 2/s }\n"), 10, 5,
                  "only applies to limits with per: api_key");
}

TEST(Limits, OverrideRateZero) {
  expectOnlyError(withLimit("    per: api_key\n    rate: 1/s\n    overrides:\n"
                            "      partner: { rate: 0/s, burst: 5 }\n"),
                  12, 24, "rate must be above zero");
}

TEST(Limits, OverrideBurstBelowOne) {
  expectOnlyError(withLimit("    per: api_key\n    rate: 1/s\n    overrides:\n"
                            "      partner: { burst: 0 }\n"),
                  12, 25, "burst must be at least 1");
}

TEST(Limits, OverrideUnknownKey) {
  expectOnlyError(withLimit("    per: api_key\n    rate: 1/s\n    overrides:\n"
                            "      partner: { rate: 2/s, brust: 5 }\n"),
                  12, 29,
                  "unknown key 'brust' in limits.l.overrides.partner (did you mean 'burst'?)");
}

TEST(Limits, OverrideMustBeAMap) {
  expectOnlyError(withLimit("    per: api_key\n    rate: 1/s\n    overrides:\n"
                            "      partner: 100/s\n"),
                  12, 16, "expected a map such as { rate: 1000/s, burst: 2000 }");
}

TEST(Limits, OverridesInheritWhatTheyLeaveOut) {
  LoadResult result =
      load(withLimit("    per: api_key\n    rate: 10/s\n    burst: 30\n    overrides:\n"
                     "      fast: { rate: 100/s }\n      deep: { burst: 500 }\n      both: { rate: "
                     "0.5/s, burst: 3 }\n"));
  ASSERT_TRUE(result.ok()) << testing::describe(result.errors);
  const auto& overrides = result.config->limits[0].overrides;
  ASSERT_EQ(overrides.size(), 3u);
  EXPECT_EQ(overrides.at("fast").rate, (Rate{100, 1}));
  EXPECT_EQ(overrides.at("fast").burst, 100);
  EXPECT_EQ(overrides.at("deep").rate, (Rate{10, 1}));
  EXPECT_EQ(overrides.at("deep").burst, 500);
  EXPECT_EQ(overrides.at("both").rate, (Rate{0.5, 1}));
  EXPECT_EQ(overrides.at("both").burst, 3);
}

TEST(Limits, BurstDefaultsToTheCountOfRate) {
  LoadResult result = load(std::string(kMinimalYaml) +
                           "limits:\n  a:\n    rate: 100/m\n  b:\n    rate: 0.5/s\n"
                           "  c:\n    rate: 2.5/s\n");
  ASSERT_TRUE(result.ok()) << testing::describe(result.errors);
  EXPECT_EQ(result.config->findLimit("a")->burst, 100);
  EXPECT_EQ(result.config->findLimit("b")->burst, 1);
  EXPECT_EQ(result.config->findLimit("c")->burst, 2.5);
}

TEST(Limits, NamesMustBePlain) {
  expectOnlyError(std::string(kMinimalYaml) + "limits:\n  \"per ip\":\n    rate: 1/s\n", 8, 3,
                  "limit name 'per ip' may only contain");
}

TEST(Limits, MustBeAMapOfNames) {
  expectOnlyError(std::string(kMinimalYaml) + "limits: [per_ip]\n", 7, 9, "expected a map");
}

// ---- server, clients, limiter, redis values ----

// The minimal file with `section` appended (starting at line 7).
std::string with(const std::string& section) { return std::string(kMinimalYaml) + section; }

TEST(Server, UnknownKeyIsReportedAtTheKey) {
  expectOnlyError(with("server:\n  lsiten: 127.0.0.1:8080\n"), 8, 3,
                  "unknown key 'lsiten' in server (did you mean 'listen'?)");
}

TEST(Server, UnknownTopLevelKey) {
  expectOnlyError(with("limiters:\n  max_keys: 5\n"), 7, 1,
                  "unknown key 'limiters' at the top level (did you mean 'limiter'?)");
}

TEST(Server, DuplicateKey) {
  expectOnlyError(with("server:\n  workers: 2\n  workers: 3\n"), 9, 3,
                  "duplicate key 'workers' in server");
}

TEST(Server, SectionMustBeAMap) {
  expectOnlyError(with("server: [listen]\n"), 7, 9, "server: expected a map, got a list");
}

TEST(Server, BadListenAddress) {
  expectOnlyError(with("server:\n  listen: 127.0.0.1:99999\n"), 8, 11, "out of range (0-65535)");
}

TEST(Server, UnbracketedIpv6Listen) {
  expectOnlyError(with("server:\n  listen: ::1:8080\n"), 8, 11, "must be in brackets");
}

TEST(Server, AdminListenMustDifferFromListen) {
  expectOnlyError(with("server:\n  listen: 127.0.0.1:8080\n  admin_listen: 127.0.0.1:8080\n"), 9,
                  17, "must differ from server.listen");
}

TEST(Server, WorkersAcceptsAutoOrPositive) {
  LoadResult result = load(with("server:\n  workers: 3\n"));
  ASSERT_TRUE(result.ok()) << testing::describe(result.errors);
  EXPECT_EQ(result.config->server.workers, 3);
  result = load(with("server:\n  workers: auto\n"));
  ASSERT_TRUE(result.ok()) << testing::describe(result.errors);
  EXPECT_EQ(result.config->server.workers, 0);
}

TEST(Server, WorkersZero) {
  expectOnlyError(with("server:\n  workers: 0\n"), 8, 12, "must be at least 1");
}

TEST(Server, WorkersGarbage) {
  expectOnlyError(with("server:\n  workers: many\n"), 8, 12, "expected auto or a positive integer");
}

TEST(Server, MaxConnectionsBelowOne) {
  expectOnlyError(with("server:\n  max_connections: 0\n"), 8, 20, "must be at least 1");
}

TEST(Server, BadDuration) {
  expectOnlyError(with("server:\n  header_timeout: 10\n"), 8, 19, "has no unit");
}

TEST(Server, ZeroTimeout) {
  expectOnlyError(with("server:\n  idle_timeout: 0s\n"), 8, 17, "must be above zero");
}

TEST(Server, ZeroShutdownGraceIsAllowed) {
  LoadResult result = load(with("server:\n  shutdown_grace: 0s\n"));
  ASSERT_TRUE(result.ok()) << testing::describe(result.errors);
  EXPECT_EQ(result.config->server.shutdown_grace, Duration{});
}

TEST(Server, NormalizePathMustBeBoolean) {
  expectOnlyError(with("server:\n  normalize_path: sometimes\n"), 8, 19,
                  "expected true or false, got 'sometimes'");
}

TEST(Server, NormalizePathCanBeTurnedOff) {
  LoadResult result = load(with("server:\n  normalize_path: false\n"));
  ASSERT_TRUE(result.ok()) << testing::describe(result.errors);
  EXPECT_FALSE(result.config->server.normalize_path);
}

TEST(Server, BadSize) {
  expectOnlyError(with("server:\n  max_body_bytes: 10M\n"), 8, 19, "unknown unit 'M'");
}

TEST(Server, AccessLogFormat) {
  expectOnlyError(with("server:\n  access_log_format: jsno\n"), 8, 22,
                  "expected one of logfmt, json, got 'jsno' (did you mean 'json'?)");
}

TEST(Server, NullValueIsReportedAtItsKey) {
  expectOnlyError(with("server:\n  listen:\n  workers: 2\n"), 8, 3,
                  "server.listen: expected an address HOST:PORT, got nothing");
}

TEST(Clients, Ipv4PrefixOutOfRange) {
  expectOnlyError(with("clients:\n  ipv4_prefix: 33\n"), 8, 16, "must be at most 32");
}

TEST(Clients, Ipv6PrefixOutOfRange) {
  expectOnlyError(with("clients:\n  ipv6_prefix: 129\n"), 8, 16, "must be at most 128");
}

TEST(Clients, NegativePrefix) {
  expectOnlyError(with("clients:\n  ipv4_prefix: -1\n"), 8, 16, "must be at least 0");
}

TEST(Clients, TrustedProxyBadCidr) {
  expectOnlyError(with("clients:\n  trusted_proxies:\n    - 10.0.0.0/8\n    - 10.0.0.0/33\n"), 10,
                  7, "CIDR '10.0.0.0/33': prefix /33 is out of range for IPv4 (0-32)");
}

TEST(Clients, ApiKeyHeaderMustBeAHeaderName) {
  expectOnlyError(with("clients:\n  api_key:\n    header: \"X Key\"\n"), 9, 13,
                  "not a valid header name");
}

TEST(Limiter, HeaderStyle) {
  expectOnlyError(with("limiter:\n  header_style: draft\n"), 8, 17,
                  "expected one of ietf, x-ratelimit, none");
}

TEST(Limiter, ResponseHeadersMustBeBoolean) {
  expectOnlyError(with("limiter:\n  response_headers: yes please\n"), 8, 21,
                  "expected true or false");
}

TEST(Limiter, MaxKeysBelowOne) {
  expectOnlyError(with("limiter:\n  max_keys: 0\n"), 8, 13, "must be at least 1");
}

TEST(Redis, AddressNeedsAPort) {
  expectOnlyError(with("redis:\n  address: localhost\n"), 8, 12, "missing port");
}

TEST(Redis, PoolSizeBelowOne) {
  expectOnlyError(with("redis:\n  pool_size: 0\n"), 8, 14, "must be at least 1");
}

// ---- upstreams ----

TEST(Upstreams, MaxConnectionsBelowOne) {
  expectOnlyError(yaml(R"(
upstreams:
  api:
    targets: [127.0.0.1:9001]
    max_connections: 0
routes:
  - path_prefix: /
    upstream: api
)"),
                  4, 22, "must be at least 1");
}

TEST(Upstreams, MaxPendingNegative) {
  expectOnlyError(yaml(R"(
upstreams:
  api:
    targets: [127.0.0.1:9001]
    max_pending: -1
routes:
  - path_prefix: /
    upstream: api
)"),
                  4, 18, "must be at least 0");
}

TEST(Upstreams, TargetPortZero) {
  expectOnlyError(yaml(R"(
upstreams:
  api:
    targets: [127.0.0.1:9001, 127.0.0.1:0]
routes:
  - path_prefix: /
    upstream: api
)"),
                  3, 31, "port 0");
}

TEST(Upstreams, TargetsInIpv6) {
  LoadResult result = load(yaml(R"(
upstreams:
  api:
    targets: ["[::1]:9001", backend.local:80]
routes:
  - path_prefix: /
    upstream: api
)"));
  ASSERT_TRUE(result.ok()) << testing::describe(result.errors);
  ASSERT_EQ(result.config->upstreams[0].targets.size(), 2u);
  EXPECT_EQ(result.config->upstreams[0].targets[0], (Address{"::1", 9001, true}));
  EXPECT_EQ(result.config->upstreams[0].targets[1], (Address{"backend.local", 80, false}));
}

TEST(Upstreams, KeptInFileOrder) {
  LoadResult result = load(yaml(R"(
upstreams:
  zeta:
    targets: [127.0.0.1:9001]
  alpha:
    targets: [127.0.0.1:9002]
routes:
  - path_prefix: /
    upstream: alpha
)"));
  ASSERT_TRUE(result.ok()) << testing::describe(result.errors);
  ASSERT_EQ(result.config->upstreams.size(), 2u);
  EXPECT_EQ(result.config->upstreams[0].name, "zeta");
  EXPECT_EQ(result.config->upstreams[1].name, "alpha");
}

// ---- routes ----

// An upstream `api`, then `routes` (starting at line 4).
std::string withRoutes(const std::string& routes) {
  return "upstreams:\n  api:\n    targets: [127.0.0.1:9001]\n" + routes;
}

TEST(Routes, PathPrefixMustStartWithSlash) {
  expectOnlyError(withRoutes("routes:\n  - path_prefix: api/\n    upstream: api\n"), 5, 18,
                  "path_prefix must start with '/'");
}

TEST(Routes, PathPrefixWithQuery) {
  expectOnlyError(withRoutes("routes:\n  - path_prefix: /a?b\n    upstream: api\n"), 5, 18,
                  "plain path");
}

TEST(Routes, MethodsMustBeTokens) {
  expectOnlyError(withRoutes("routes:\n  - path_prefix: /\n    methods: [GET, \"PO ST\"]\n"
                             "    upstream: api\n"),
                  6, 20, "'PO ST' is not a valid HTTP method");
}

TEST(Routes, MethodsAreUpperCased) {
  LoadResult result =
      load(withRoutes("routes:\n  - path_prefix: /\n    methods: [get, Post, GET]\n"
                      "    upstream: api\n"));
  ASSERT_TRUE(result.ok()) << testing::describe(result.errors);
  EXPECT_EQ(result.config->routes[0].methods, (std::vector<std::string>{"GET", "POST"}));
}

TEST(Routes, NameDefaultsToPathPrefix) {
  LoadResult result =
      load(withRoutes("routes:\n  - path_prefix: /api/\n    upstream: api\n  - name: rest\n"
                      "    path_prefix: /\n    upstream: api\n"));
  ASSERT_TRUE(result.ok()) << testing::describe(result.errors);
  EXPECT_EQ(result.config->routes[0].name, "/api/");
  EXPECT_EQ(result.config->routes[1].name, "rest");
}

TEST(Routes, DuplicateRouteIsReportedAtTheSecond) {
  expectOnlyError(withRoutes(yaml(R"(
routes:
  - path_prefix: /api/
    methods: [GET, POST]
    upstream: api
  - path_prefix: /
    upstream: api
  - path_prefix: /api/
    methods: [post, GET]
    upstream: api
)")),
                  10, 5, "routes[2]: same path_prefix, host and methods as routes[0] (line 5)");
}

TEST(Routes, SamePrefixWithDifferentHostIsNotADuplicate) {
  LoadResult result = load(withRoutes(yaml(R"(
routes:
  - path_prefix: /
    host: a.example
    upstream: api
  - path_prefix: /
    host: b.example
    upstream: api
  - path_prefix: /
    upstream: api
)")));
  EXPECT_TRUE(result.ok()) << testing::describe(result.errors);
}

TEST(Routes, DuplicateName) {
  expectOnlyError(withRoutes(yaml(R"(
routes:
  - name: main
    path_prefix: /api/
    upstream: api
  - name: main
    path_prefix: /
    upstream: api
)")),
                  8, 11, "duplicate route name 'main' (also routes[0] at line 5)");
}

TEST(Routes, HostIsLowerCasedAndMustHaveNoPort) {
  LoadResult result = load(
      withRoutes("routes:\n  - path_prefix: /\n    host: API.Example.com\n    upstream: api\n"));
  ASSERT_TRUE(result.ok()) << testing::describe(result.errors);
  EXPECT_EQ(result.config->routes[0].host, "api.example.com");
  expectOnlyError(
      withRoutes("routes:\n  - path_prefix: /\n    host: example.com:8080\n    upstream: api\n"), 6,
      11, "must not include a port");
}

TEST(Routes, RouteMustBeAMap) {
  expectOnlyError(withRoutes("routes:\n  - /api/\n"), 5, 5, "routes[0]: expected a map");
}

TEST(Routes, RoutesMustBeAList) {
  expectOnlyError(withRoutes("routes:\n  path_prefix: /\n"), 5, 3, "routes: expected a list");
}

// ---- several errors, syntax errors, robustness ----

TEST(Loader, ReportsEveryIndependentError) {
  LoadResult result = load(yaml(R"(
server:
  lsiten: 0.0.0.0:8080
upstreams:
  api:
    targets: [127.0.0.1:9001]
limits:
  per_ip:
    per: ip
    rate: 0/s
routes:
  - path_prefix: /
    upstream: nope
    limits: [per_ip]
)"));
  EXPECT_EQ(result.config, nullptr);
  ASSERT_EQ(result.errors.size(), 3u) << testing::describe(result.errors);
  EXPECT_EQ(result.errors[0].toString(),
            "test.yaml:2:3: unknown key 'lsiten' in server (did you mean 'listen'?)");
  EXPECT_EQ(result.errors[1].line, 9);
  EXPECT_EQ(result.errors[1].column, 11);
  EXPECT_NE(result.errors[1].message.find("rate must be above zero"), std::string::npos);
  EXPECT_EQ(result.errors[2].line, 12);
  EXPECT_EQ(result.errors[2].column, 15);
  EXPECT_NE(result.errors[2].message.find("unknown upstream 'nope'"), std::string::npos);
}

TEST(Loader, YamlSyntaxErrorIsPositioned) {
  expectOnlyError(yaml(R"(
upstreams:
  api:
    targets: [127.0.0.1:9001
routes:
  - path_prefix: /
)"),
                  4, 7, "YAML syntax error: end of sequence flow not found");
}

TEST(Loader, StrayCommaIsASyntaxError) {
  // yaml-cpp 0.7 would otherwise report endless empty documents here.
  expectOnlyError(",upstreams: {}\n", 1, 1, "YAML syntax error: unexpected ','");
  expectOnlyError(std::string(kMinimalYaml) + "...\n,\n", 8, 1,
                  "YAML syntax error: unexpected ','");
}

TEST(Loader, TrailingEmptyDocumentIsTolerated) {
  LoadResult result = load("---\n" + std::string(kMinimalYaml) + "---\n");
  EXPECT_TRUE(result.ok()) << testing::describe(result.errors);
}

TEST(Loader, BadIndentationIsPositioned) {
  expectOnlyError(yaml(R"(
server:
  listen: 127.0.0.1:8080
 workers: 2
)"),
                  3, 2, "YAML syntax error");
}

TEST(Loader, UndefinedAliasIsPositioned) {
  expectOnlyError("upstreams: *pools\n", 1, 12, "YAML syntax error");
}

TEST(Loader, TopLevelMustBeAMap) {
  expectOnlyError("- a\n- b\n", 1, 1, "expected a map of settings at the top level");
}

TEST(Loader, OnlyOneDocument) {
  // Reported at the "---" that starts the second document.
  expectOnlyError(std::string(kMinimalYaml) + "---\nserver: {}\n", 7, 1, "one YAML document");
}

TEST(Loader, AnchorsAndAliasesWork) {
  LoadResult result = load(yaml(R"(
upstreams:
  a:
    targets: &pool [127.0.0.1:9001, 127.0.0.1:9002]
  b:
    targets: *pool
routes:
  - path_prefix: /
    upstream: b
)"));
  ASSERT_TRUE(result.ok()) << testing::describe(result.errors);
  EXPECT_EQ(result.config->upstreams[1].targets.size(), 2u);
}

TEST(Loader, NeverThrowsOnGarbage) {
  std::mt19937 rng(12345);
  const std::string alphabet = "abc:-[]{}&*!|>'\"%@`#,?\n\t 0123456789/.";
  for (int i = 0; i < 2000; ++i) {
    std::string text;
    std::size_t length = rng() % 64;
    for (std::size_t j = 0; j < length; ++j) text += alphabet[rng() % alphabet.size()];
    LoadResult result;
    EXPECT_NO_THROW(result = load(text)) << text;
    EXPECT_NE(result.config == nullptr, result.errors.empty()) << text;
  }
}

TEST(Loader, NeverThrowsOnMutationsOfAValidFile) {
  std::mt19937 rng(777);
  const std::string base = std::string(kMinimalYaml) +
                           "limits:\n  k:\n    per: api_key\n    rate: 1/s\n"
                           "    overrides:\n      p: { rate: 2/s }\n";
  const std::string alphabet = ":-[]{}&*!|\"\n 0/";
  for (int i = 0; i < 2000; ++i) {
    std::string text = base;
    for (int edits = 0; edits < 3; ++edits) {
      text[rng() % text.size()] = alphabet[rng() % alphabet.size()];
    }
    LoadResult result;
    EXPECT_NO_THROW(result = load(text)) << text;
    for (const ConfigError& e : result.errors) {
      EXPECT_GE(e.line, 1) << e.toString();
      EXPECT_GE(e.column, 1) << e.toString();
    }
  }
}

TEST(LoadConfigFile, MissingFileHasNoPosition) {
  LoadResult result = loadConfigFile("/nonexistent/sluice.yaml");
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_EQ(result.errors[0].line, 0);
  EXPECT_EQ(result.errors[0].toString().rfind("/nonexistent/sluice.yaml: cannot open", 0), 0u)
      << result.errors[0].toString();
}

TEST(LoadConfigFile, DirectoryIsAnError) {
  LoadResult result = loadConfigFile("/");
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_NE(result.errors[0].message.find("directory"), std::string::npos);
}

}  // namespace
}  // namespace sluice::config
