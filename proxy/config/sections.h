#pragma once
// The sections of the config file (SPEC §2), each read from its YAML entry into
// a Draft, and the cross-checks that run once every section is read.

#include <yaml-cpp/yaml.h>

#include <optional>
#include <string>
#include <vector>

#include "proxy/config/config.h"
#include "proxy/config/reader.h"

namespace sluice::config {

// What the route cross-checks need to point back into the document.
struct RouteInfo {
  std::string path;
  YAML::Mark mark;
  std::optional<Entry> name;
  std::optional<Entry> path_prefix;
  std::optional<Entry> upstream;
  std::vector<Entry> limits;
};

// The Config being read, plus the document positions the cross-checks report at.
struct Draft {
  Config config;
  std::vector<RouteInfo> routes;    // parallel to config.routes
  std::vector<Entry> redis_stores;  // `store: redis` values, checked against redis:
  bool upstreams_defined = false;   // upstreams is a non-empty map
  bool limits_readable = true;      // limits is absent or a map
};

// Each load* reads one section into its part of the Config (or into `draft`),
// reporting to `reader`; a value that fails to read keeps its default.

// server: listeners, worker count, timeouts, size caps, access log.
void loadServer(Reader& reader, const Entry& entry, ServerConfig& s);
// clients: trusted proxies, IP prefixes, where the API key is read from.
void loadClients(Reader& reader, const Entry& entry, ClientsConfig& c);
// upstreams: at least one, each with its targets and pool settings.
void loadUpstreams(Reader& reader, const Entry& entry, Draft& draft);
// limits: per-name rate, burst, scope, exemptions and per-key overrides.
void loadLimits(Reader& reader, const Entry& entry, Draft& draft);
// redis: the shared store; `out` is set unless the value is not a map (empty: defaults).
void loadRedis(Reader& reader, const Entry& entry, std::optional<RedisConfig>& out);
// limiter: sweeping, key cap and response headers.
void loadLimiter(Reader& reader, const Entry& entry, LimiterConfig& l);
// tls: certificate files (names and positions), min_version, client_ca.
void loadTls(Reader& reader, const Entry& entry, TlsConfig& tls);
// routes: at least one, in file order (first match wins).
void loadRoutes(Reader& reader, const Entry& entry, Draft& draft);

// After every section: unknown upstream and limit names, routes that can never
// match, repeated route names, `store: redis` without a redis: block.
void checkReferences(Reader& reader, const Draft& draft);

}  // namespace sluice::config
