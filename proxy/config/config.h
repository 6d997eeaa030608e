#pragma once
// The validated, immutable configuration (SPEC §2). Produced only by the
// loader; every field holds its default when the key was left out.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/config/values.h"

namespace sluice::config {

// Where a value was written in the config file (1-based; 0: not written).
struct Position {
  int line = 0;
  int column = 0;
};

struct ServerConfig {
  Address listen{"0.0.0.0", 8080};
  bool cleartext = true;  // false: `listen: ""`, no cleartext listener (SPEC §9)
  Address admin_listen{"127.0.0.1", 9901};
  int workers = 0;  // 0 = auto (number of CPUs)
  std::int64_t max_connections = 10000;
  Duration header_timeout = Duration::seconds(10);
  Duration idle_timeout = Duration::seconds(60);
  Duration body_timeout = Duration::seconds(30);
  std::uint64_t max_header_bytes = 16 * 1024;
  std::uint64_t max_body_bytes = 10 * 1024 * 1024;
  Duration shutdown_grace = Duration::seconds(20);
  std::string access_log;                    // "" off | "stderr" | path
  std::string access_log_format = "logfmt";  // logfmt | json
  bool normalize_path = true;  // SPEC §12: route and forward http::normalizePath's views
  std::optional<Address> tls_listen;  // SPEC §9: the TLS listener, when set
  Duration tunnel_idle_timeout = Duration::seconds(3600);  // SPEC §10
};

// SPEC §9. Files are read by the TLS room (proxy/tls), which reports
// problems at the positions kept here.
struct TlsCertificate {
  std::string cert;  // PEM: leaf first, then its chain
  std::string key;
  Position cert_at;
  Position key_at;
};

enum class TlsVersion { k12, k13 };

struct TlsConfig {
  std::vector<TlsCertificate> certificates;  // the first is the default
  TlsVersion min_version = TlsVersion::k12;
  std::string client_ca;  // "" = no client certificates asked for
  Position client_ca_at;
};

struct ApiKeyConfig {
  std::string header = "X-API-Key";
  std::string query;  // "" = not read from the query string
};

struct ClientsConfig {
  std::vector<Cidr> trusted_proxies;
  int ipv4_prefix = 32;
  int ipv6_prefix = 64;
  ApiKeyConfig api_key;
};

struct UpstreamConfig {
  std::string name;
  std::vector<Address> targets;
  std::int64_t max_connections = 64;
  std::int64_t max_pending = 1024;
  Duration pending_timeout = Duration::seconds(5);
  Duration connect_timeout = Duration::seconds(2);
  Duration response_timeout = Duration::seconds(30);
  Duration idle_timeout = Duration::seconds(60);
  bool tls = false;             // SPEC §9: TLS to the targets, certificate verified
  std::string tls_ca;           // "" = the system's store
  Position tls_ca_at;
  std::string tls_server_name;  // "" = the target's host
};

enum class LimitScope { kGlobal, kIp, kApiKey };
enum class MissingKey { kIp, kSkip, kReject };
enum class StoreKind { kLocal, kRedis };
enum class StoreErrorPolicy { kLocal, kAllow, kDeny };

struct KeyOverride {
  Rate rate;
  double burst = 0;
};

struct LimitConfig {
  std::string name;
  LimitScope per = LimitScope::kGlobal;
  Rate rate;
  double burst = 0;  // resolved: default is max(1, rate.count)
  bool shadow = false;
  std::vector<Cidr> exempt;
  MissingKey missing = MissingKey::kIp;
  std::map<std::string, KeyOverride> overrides;
  StoreKind store = StoreKind::kLocal;
  StoreErrorPolicy on_store_error = StoreErrorPolicy::kLocal;
};

struct RedisConfig {
  Address address{"127.0.0.1", 6379};
  Duration timeout = Duration::millis(20);
  int pool_size = 2;
  std::string key_prefix = "sluice:";
};

enum class HeaderStyle { kIetf, kXRateLimit, kNone };

struct LimiterConfig {
  Duration sweep_interval = Duration::seconds(10);
  std::int64_t max_keys = 1000000;
  bool response_headers = false;
  HeaderStyle header_style = HeaderStyle::kIetf;
};

struct RouteConfig {
  std::string name;  // default: path_prefix
  std::string path_prefix;
  std::string host;                  // "" = any
  std::vector<std::string> methods;  // empty = any
  std::string upstream;
  std::vector<std::string> limits;
  // SPEC §10: protocols a client may upgrade to here (lower case); h2c never.
  std::vector<std::string> upgrades{"websocket"};
};

struct Config {
  std::string file;
  ServerConfig server;
  ClientsConfig clients;
  std::vector<UpstreamConfig> upstreams;  // in file order
  std::vector<LimitConfig> limits;        // in file order
  std::optional<RedisConfig> redis;       // set when the block is present
  LimiterConfig limiter;
  std::vector<RouteConfig> routes;  // first match wins
  TlsConfig tls;

  // The upstream or limit with this name, or nullptr.
  const UpstreamConfig* findUpstream(const std::string& name) const;
  const LimitConfig* findLimit(const std::string& name) const;
};

// The config-file spelling of each enum value ("api_key", "x-ratelimit", ...).
std::string_view toString(LimitScope value);
std::string_view toString(MissingKey value);
std::string_view toString(StoreKind value);
std::string_view toString(StoreErrorPolicy value);
std::string_view toString(HeaderStyle value);
std::string_view toString(TlsVersion value);

}  // namespace sluice::config
