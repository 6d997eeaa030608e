// Defaults (SPEC §2) and a file that sets every key.

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "proxy/config/loader.h"
#include "tests/config/loader_test_util.h"

namespace sluice::config {
namespace {

using testing::kMinimalYaml;
using testing::load;
using testing::yaml;

TEST(Defaults, MinimalConfigGetsEverySpecDefault) {
  LoadResult result = load(std::string(kMinimalYaml) + "limits:\n  l:\n    rate: 7/s\n");
  ASSERT_TRUE(result.ok()) << testing::describe(result.errors);
  const Config& c = *result.config;

  EXPECT_EQ(c.server.listen, (Address{"0.0.0.0", 8080, false}));
  EXPECT_EQ(c.server.admin_listen, (Address{"127.0.0.1", 9901, false}));
  EXPECT_EQ(c.server.workers, 0);  // auto
  EXPECT_EQ(c.server.max_connections, 10000);
  EXPECT_EQ(c.server.header_timeout, Duration::seconds(10));
  EXPECT_EQ(c.server.idle_timeout, Duration::seconds(60));
  EXPECT_EQ(c.server.body_timeout, Duration::seconds(30));
  EXPECT_EQ(c.server.max_header_bytes, 16u * 1024);
  EXPECT_EQ(c.server.max_body_bytes, 10u * 1024 * 1024);
  EXPECT_EQ(c.server.shutdown_grace, Duration::seconds(20));
  EXPECT_EQ(c.server.access_log, "");
  EXPECT_EQ(c.server.access_log_format, "logfmt");
  EXPECT_TRUE(c.server.normalize_path);

  EXPECT_TRUE(c.clients.trusted_proxies.empty());
  EXPECT_EQ(c.clients.ipv4_prefix, 32);
  EXPECT_EQ(c.clients.ipv6_prefix, 64);
  EXPECT_EQ(c.clients.api_key.header, "X-API-Key");
  EXPECT_EQ(c.clients.api_key.query, "");

  ASSERT_EQ(c.upstreams.size(), 1u);
  const UpstreamConfig& u = c.upstreams[0];
  EXPECT_EQ(u.targets, (std::vector<Address>{{"127.0.0.1", 9001, false}}));
  EXPECT_EQ(u.max_connections, 64);
  EXPECT_EQ(u.max_pending, 1024);
  EXPECT_EQ(u.pending_timeout, Duration::seconds(5));
  EXPECT_EQ(u.connect_timeout, Duration::seconds(2));
  EXPECT_EQ(u.response_timeout, Duration::seconds(30));
  EXPECT_EQ(u.idle_timeout, Duration::seconds(60));

  ASSERT_EQ(c.limits.size(), 1u);
  const LimitConfig& l = c.limits[0];
  EXPECT_EQ(l.name, "l");
  EXPECT_EQ(l.per, LimitScope::kGlobal);
  EXPECT_EQ(l.rate, (Rate{7, 1}));
  EXPECT_EQ(l.burst, 7);
  EXPECT_FALSE(l.shadow);
  EXPECT_TRUE(l.exempt.empty());
  EXPECT_EQ(l.missing, MissingKey::kIp);
  EXPECT_TRUE(l.overrides.empty());
  EXPECT_EQ(l.store, StoreKind::kLocal);
  EXPECT_EQ(l.on_store_error, StoreErrorPolicy::kLocal);

  EXPECT_FALSE(c.redis.has_value());

  EXPECT_EQ(c.limiter.sweep_interval, Duration::seconds(10));
  EXPECT_EQ(c.limiter.max_keys, 1000000);
  EXPECT_FALSE(c.limiter.response_headers);
  EXPECT_EQ(c.limiter.header_style, HeaderStyle::kIetf);

  ASSERT_EQ(c.routes.size(), 1u);
  const RouteConfig& r = c.routes[0];
  EXPECT_EQ(r.name, "/");
  EXPECT_EQ(r.path_prefix, "/");
  EXPECT_EQ(r.host, "");
  EXPECT_TRUE(r.methods.empty());
  EXPECT_EQ(r.upstream, "api");
  EXPECT_TRUE(r.limits.empty());
}

TEST(Defaults, WithoutLimitsThereAreNone) {
  LoadResult result = load(kMinimalYaml);
  ASSERT_TRUE(result.ok()) << testing::describe(result.errors);
  EXPECT_TRUE(result.config->limits.empty());
}

TEST(Defaults, EmptyRedisBlockTakesRedisDefaults) {
  LoadResult result = load(std::string(kMinimalYaml) + "redis: {}\n");
  ASSERT_TRUE(result.ok()) << testing::describe(result.errors);
  ASSERT_TRUE(result.config->redis.has_value());
  const RedisConfig& redis = *result.config->redis;
  EXPECT_EQ(redis.address, (Address{"127.0.0.1", 6379, false}));
  EXPECT_EQ(redis.timeout, Duration::millis(20));
  EXPECT_EQ(redis.pool_size, 2);
  EXPECT_EQ(redis.key_prefix, "sluice:");
}

TEST(Defaults, EmptySectionsTakeDefaults) {
  LoadResult result = load(std::string(kMinimalYaml) + "server:\nclients: {}\nlimiter:\nlimits:\n");
  ASSERT_TRUE(result.ok()) << testing::describe(result.errors);
  EXPECT_EQ(result.config->server.listen.port, 8080);
}

TEST(FullConfig, EveryKeyIsReadFromTheFile) {
  LoadResult result = load(yaml(R"(
server:
  listen: "[::]:18080"
  admin_listen: 127.0.0.1:19901
  workers: 4
  max_connections: 500
  header_timeout: 3s
  idle_timeout: 2m
  body_timeout: 1500ms
  max_header_bytes: 8KiB
  max_body_bytes: 1MB
  shutdown_grace: 1h
  access_log: /var/log/sluice/access.log
  access_log_format: json
  normalize_path: false
clients:
  trusted_proxies: [10.0.0.0/8, "2001:db8::/32"]
  ipv4_prefix: 24
  ipv6_prefix: 56
  api_key:
    header: Authorization-Key
    query: api_key
upstreams:
  api:
    targets: [127.0.0.1:9001, 127.0.0.1:9002]
    max_connections: 8
    max_pending: 0
    pending_timeout: 100ms
    connect_timeout: 250ms
    response_timeout: 5s
    idle_timeout: 90s
limits:
  per_key:
    per: api_key
    rate: 100/m
    burst: 20
    shadow: true
    exempt: [192.168.0.0/16]
    missing: reject
    overrides:
      partner-123: { rate: 1000/s, burst: 2000 }
    store: redis
    on_store_error: deny
redis:
  address: redis.internal:6380
  timeout: 50ms
  pool_size: 4
  key_prefix: "rl:"
limiter:
  sweep_interval: 30s
  max_keys: 5000
  response_headers: true
  header_style: x-ratelimit
routes:
  - name: api
    path_prefix: /api/
    host: api.example.com
    methods: [GET, POST]
    upstream: api
    limits: [per_key]
)"));
  ASSERT_TRUE(result.ok()) << testing::describe(result.errors);
  const Config& c = *result.config;
  EXPECT_EQ(c.server.listen, (Address{"::", 18080, true}));
  EXPECT_EQ(c.server.admin_listen, (Address{"127.0.0.1", 19901, false}));
  EXPECT_EQ(c.server.workers, 4);
  EXPECT_EQ(c.server.max_connections, 500);
  EXPECT_EQ(c.server.header_timeout, Duration::seconds(3));
  EXPECT_EQ(c.server.idle_timeout, Duration::seconds(120));
  EXPECT_EQ(c.server.body_timeout, Duration::millis(1500));
  EXPECT_EQ(c.server.max_header_bytes, 8192u);
  EXPECT_EQ(c.server.max_body_bytes, 1000000u);
  EXPECT_EQ(c.server.shutdown_grace, Duration::seconds(3600));
  EXPECT_EQ(c.server.access_log, "/var/log/sluice/access.log");
  EXPECT_EQ(c.server.access_log_format, "json");
  EXPECT_FALSE(c.server.normalize_path);

  ASSERT_EQ(c.clients.trusted_proxies.size(), 2u);
  EXPECT_EQ(c.clients.trusted_proxies[0].toString(), "10.0.0.0/8");
  EXPECT_EQ(c.clients.trusted_proxies[1].toString(), "2001:db8::/32");
  EXPECT_EQ(c.clients.ipv4_prefix, 24);
  EXPECT_EQ(c.clients.ipv6_prefix, 56);
  EXPECT_EQ(c.clients.api_key.header, "Authorization-Key");
  EXPECT_EQ(c.clients.api_key.query, "api_key");

  const UpstreamConfig& u = c.upstreams.at(0);
  EXPECT_EQ(u.targets.size(), 2u);
  EXPECT_EQ(u.max_connections, 8);
  EXPECT_EQ(u.max_pending, 0);
  EXPECT_EQ(u.pending_timeout, Duration::millis(100));
  EXPECT_EQ(u.connect_timeout, Duration::millis(250));
  EXPECT_EQ(u.response_timeout, Duration::seconds(5));
  EXPECT_EQ(u.idle_timeout, Duration::seconds(90));

  const LimitConfig& l = c.limits.at(0);
  EXPECT_EQ(l.per, LimitScope::kApiKey);
  EXPECT_EQ(l.rate, (Rate{100, 60}));
  EXPECT_EQ(l.burst, 20);
  EXPECT_TRUE(l.shadow);
  ASSERT_EQ(l.exempt.size(), 1u);
  EXPECT_EQ(l.exempt[0].toString(), "192.168.0.0/16");
  EXPECT_EQ(l.missing, MissingKey::kReject);
  ASSERT_EQ(l.overrides.count("partner-123"), 1u);
  EXPECT_EQ(l.overrides.at("partner-123").rate, (Rate{1000, 1}));
  EXPECT_EQ(l.overrides.at("partner-123").burst, 2000);
  EXPECT_EQ(l.store, StoreKind::kRedis);
  EXPECT_EQ(l.on_store_error, StoreErrorPolicy::kDeny);

  ASSERT_TRUE(c.redis.has_value());
  EXPECT_EQ(c.redis->address, (Address{"redis.internal", 6380, false}));
  EXPECT_EQ(c.redis->timeout, Duration::millis(50));
  EXPECT_EQ(c.redis->pool_size, 4);
  EXPECT_EQ(c.redis->key_prefix, "rl:");

  EXPECT_EQ(c.limiter.sweep_interval, Duration::seconds(30));
  EXPECT_EQ(c.limiter.max_keys, 5000);
  EXPECT_TRUE(c.limiter.response_headers);
  EXPECT_EQ(c.limiter.header_style, HeaderStyle::kXRateLimit);

  const RouteConfig& r = c.routes.at(0);
  EXPECT_EQ(r.name, "api");
  EXPECT_EQ(r.path_prefix, "/api/");
  EXPECT_EQ(r.host, "api.example.com");
  EXPECT_EQ(r.methods, (std::vector<std::string>{"GET", "POST"}));
  EXPECT_EQ(r.upstream, "api");
  EXPECT_EQ(r.limits, (std::vector<std::string>{"per_key"}));
}

TEST(EnumNames, MatchTheConfigSpelling) {
  EXPECT_EQ(toString(LimitScope::kApiKey), "api_key");
  EXPECT_EQ(toString(MissingKey::kReject), "reject");
  EXPECT_EQ(toString(StoreKind::kRedis), "redis");
  EXPECT_EQ(toString(StoreErrorPolicy::kAllow), "allow");
  EXPECT_EQ(toString(HeaderStyle::kXRateLimit), "x-ratelimit");
}

// Every example under config/ is what users copy: each must load cleanly.
TEST(ExampleConfigs, EveryFileInConfigDirLoads) {
  std::filesystem::path dir = std::filesystem::path(testing::sourceDir()) / "config";
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".yaml") continue;
    ++files;
    LoadResult result = loadConfigFile(entry.path().string());
    EXPECT_TRUE(result.ok()) << entry.path() << testing::describe(result.errors);
    if (!result.ok()) continue;
    const Config& c = *result.config;
    EXPECT_EQ(c.file, entry.path().string());
    // Examples must be safe to run as they are: nothing listens beyond loopback.
    EXPECT_EQ(c.server.listen.host, "127.0.0.1") << entry.path();
    EXPECT_EQ(c.server.admin_listen.host, "127.0.0.1") << entry.path();
    for (const UpstreamConfig& u : c.upstreams) {
      for (const Address& target : u.targets) {
        EXPECT_EQ(target.host, "127.0.0.1") << entry.path() << " upstream " << u.name;
      }
    }
  }
  EXPECT_GE(files, 3);
}

// The default file is what the README runs; keep it a working demo.
TEST(ExampleConfigs, DefaultFileIsTheDemo) {
  LoadResult result = loadConfigFile(testing::sourceDir() + "/config/sluice.yaml");
  ASSERT_TRUE(result.ok()) << testing::describe(result.errors);
  const Config& c = *result.config;
  EXPECT_EQ(c.server.listen, (Address{"127.0.0.1", 8080, false}));
  EXPECT_EQ(c.server.admin_listen, (Address{"127.0.0.1", 9901, false}));
  ASSERT_NE(c.findUpstream("demo"), nullptr);
  EXPECT_EQ(c.findUpstream("demo")->targets, (std::vector<Address>{{"127.0.0.1", 9001, false}}));
  ASSERT_NE(c.findLimit("per_ip"), nullptr);
  EXPECT_EQ(c.findLimit("per_ip")->rate, (Rate{5, 1}));
  EXPECT_EQ(c.findLimit("per_ip")->burst, 10);
  ASSERT_EQ(c.routes.size(), 2u);
  EXPECT_EQ(c.routes[0].limits, (std::vector<std::string>{"global", "per_ip", "per_key"}));
  EXPECT_EQ(c.routes[1].path_prefix, "/");
  EXPECT_EQ(c.routes[1].limits, (std::vector<std::string>{"per_ip"}));
}

}  // namespace
}  // namespace sluice::config
