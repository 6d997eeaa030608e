#include "proxy/config/loader.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <sstream>
#include <string_view>
#include <tuple>
#include <utility>

#include "proxy/config/document.h"
#include "proxy/config/enum_names.h"
#include "proxy/config/reader.h"
#include "proxy/config/suggest.h"

namespace sluice::config {
namespace {

constexpr std::size_t kMaxApiKeyBytes = 256;  // SPEC §4: a longer key is a 400
constexpr std::int64_t kMaxWorkers = 1024;
constexpr std::int64_t kMaxPoolSize = 1024;
constexpr std::int64_t kMaxInt = 2147483647;
constexpr std::int64_t kMaxInt64 = 9223372036854775807LL;

constexpr std::string_view kRootKeys[] = {"server", "clients", "upstreams", "limits",
                                          "redis",  "limiter", "routes"};
constexpr std::string_view kServerKeys[] = {
    "listen",         "admin_listen",   "workers",      "max_connections",
    "header_timeout", "idle_timeout",   "body_timeout", "max_header_bytes",
    "max_body_bytes", "shutdown_grace", "access_log",   "access_log_format"};
constexpr std::string_view kClientsKeys[] = {"trusted_proxies", "ipv4_prefix", "ipv6_prefix",
                                             "api_key"};
constexpr std::string_view kApiKeyKeys[] = {"header", "query"};
constexpr std::string_view kUpstreamKeys[] = {
    "targets",         "max_connections",  "max_pending", "pending_timeout",
    "connect_timeout", "response_timeout", "idle_timeout"};
constexpr std::string_view kLimitKeys[] = {
    "per", "rate", "burst", "shadow", "exempt", "missing", "overrides", "store", "on_store_error"};
constexpr std::string_view kOverrideKeys[] = {"rate", "burst"};
constexpr std::string_view kRedisKeys[] = {"address", "timeout", "pool_size", "key_prefix"};
constexpr std::string_view kLimiterKeys[] = {"sweep_interval", "max_keys", "response_headers",
                                             "header_style"};
constexpr std::string_view kRouteKeys[] = {"name",    "path_prefix", "host",
                                           "methods", "upstream",    "limits"};

// What the route cross-checks need to point back into the document.
struct RouteInfo {
  std::string path;
  YAML::Mark mark;
  std::optional<Entry> name;
  std::optional<Entry> path_prefix;
  std::optional<Entry> upstream;
  std::vector<Entry> limits;
  bool complete = false;  // path_prefix and upstream parsed
};

bool isTokenChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// RFC 9110 §5.6.2 token: header names and methods.
bool isToken(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), isTokenChar);
}

// Names of upstreams and limits end up in metric labels and in the quoted
// RateLimit-Policy item (SPEC §4), so they stay plain.
bool isPlainName(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '-' || c == '.';
  });
}

std::string toLower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

std::string toUpper(std::string text) {
  for (char& c : text) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return text;
}

class Loader : private Reader {
 public:
  explicit Loader(const std::string& file) : Reader(file) { config_.file = file; }

  LoadResult run(const std::string& yaml) {
    loadDocument(yaml, *this, [this](const YAML::Node& root) { loadRoot(root); });
    LoadResult result;
    result.errors = takeErrors();
    if (result.errors.empty()) result.config = std::make_shared<const Config>(std::move(config_));
    return result;
  }

 private:
  // ---- sections ----

  void loadRoot(const YAML::Node& root) {
    MapView view = openMap(Entry{"", root, YAML::Mark()}, kRootKeys, /*is_root=*/true);
    if (!view.valid) return;
    if (const Entry* e = view.find("server")) loadServer(*e);
    if (const Entry* e = view.find("clients")) loadClients(*e);
    if (const Entry* e = require(view, "upstreams")) loadUpstreams(*e);
    if (const Entry* e = view.find("limits")) loadLimits(*e);
    if (const Entry* e = view.find("redis")) loadRedis(*e);
    if (const Entry* e = view.find("limiter")) loadLimiter(*e);
    if (const Entry* e = require(view, "routes")) loadRoutes(*e);
    checkReferences();
  }

  void loadServer(const Entry& entry) {
    MapView view = openMap(entry, kServerKeys);
    ServerConfig& s = config_.server;
    if (const Entry* e = view.find("listen")) readAddress(*e, s.listen, Port::kZeroAllowed);
    if (const Entry* e = view.find("admin_listen")) {
      if (readAddress(*e, s.admin_listen, Port::kZeroAllowed) && s.admin_listen.port != 0 &&
          s.admin_listen == s.listen) {
        error(*e, "must differ from server.listen (" + s.listen.toString() + ")");
      }
    }
    if (const Entry* e = view.find("workers")) {
      if (e->value.IsScalar() && e->value.Scalar() == "auto") {
        s.workers = 0;
      } else if (e->value.IsScalar()) {
        auto text = e->value.Scalar();
        std::int64_t value = 0;
        auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
        if (ec != std::errc() || ptr != text.data() + text.size()) {
          error(*e, "expected auto or a positive integer, got '" + text + "'");
        } else {
          readInt(*e, s.workers, 1, kMaxWorkers);
        }
      } else {
        error(*e, "expected auto or a positive integer, got " + describe(e->value));
      }
    }
    if (const Entry* e = view.find("max_connections")) {
      readInt(*e, s.max_connections, 1, kMaxInt64);
    }
    if (const Entry* e = view.find("header_timeout")) readDuration(*e, s.header_timeout);
    if (const Entry* e = view.find("idle_timeout")) readDuration(*e, s.idle_timeout);
    if (const Entry* e = view.find("body_timeout")) readDuration(*e, s.body_timeout);
    if (const Entry* e = view.find("max_header_bytes")) readSize(*e, s.max_header_bytes, 1);
    if (const Entry* e = view.find("max_body_bytes")) readSize(*e, s.max_body_bytes, 0);
    if (const Entry* e = view.find("shutdown_grace")) {
      readDuration(*e, s.shutdown_grace, Zero::kAllowed);
    }
    if (const Entry* e = view.find("access_log")) {
      if (auto text = readString(*e)) s.access_log = *text;
    }
    if (const Entry* e = view.find("access_log_format")) {
      const std::vector<std::string> formats = {"logfmt", "json"};
      if (auto index = readChoice(*e, formats)) s.access_log_format = formats[*index];
    }
  }

  void loadClients(const Entry& entry) {
    MapView view = openMap(entry, kClientsKeys);
    ClientsConfig& c = config_.clients;
    if (const Entry* e = view.find("trusted_proxies")) readCidrs(*e, c.trusted_proxies);
    if (const Entry* e = view.find("ipv4_prefix")) readInt(*e, c.ipv4_prefix, 0, 32);
    if (const Entry* e = view.find("ipv6_prefix")) readInt(*e, c.ipv6_prefix, 0, 128);
    if (const Entry* e = view.find("api_key")) {
      MapView key_view = openMap(*e, kApiKeyKeys);
      if (const Entry* h = key_view.find("header")) {
        if (auto text = readString(*h)) {
          if (isToken(*text)) {
            c.api_key.header = *text;
          } else {
            error(*h, "'" + *text + "' is not a valid header name");
          }
        }
      }
      if (const Entry* q = key_view.find("query")) {
        if (auto text = readString(*q)) {
          bool plain = std::all_of(text->begin(), text->end(), [](char ch) {
            return isTokenChar(ch) && ch != '&' && ch != '#';
          });
          if (plain) {
            c.api_key.query = *text;
          } else {
            error(*q, "'" + *text + "' is not a valid query parameter name");
          }
        }
      }
    }
  }

  void loadUpstreams(const Entry& entry) {
    MapView view = openMap(entry, {});
    if (!view.valid) return;
    if (view.entries.empty()) {
      error(entry, "at least one upstream is required");
      return;
    }
    upstreams_defined_ = true;
    for (const auto& [name, e] : view.entries) {
      if (!isPlainName(name)) {
        error(e.anchor,
              "upstream name '" + name + "' may only contain letters, digits, '_', '-' and '.'");
      }
      UpstreamConfig upstream;
      upstream.name = name;
      loadUpstream(e, upstream);
      config_.upstreams.push_back(std::move(upstream));
    }
  }

  void loadUpstream(const Entry& entry, UpstreamConfig& u) {
    MapView view = openMap(entry, kUpstreamKeys);
    if (const Entry* e = require(view, "targets")) {
      forEachItem(*e, [&](const Entry& item) {
        Address address;
        if (readAddress(item, address, Port::kZeroRejected)) u.targets.push_back(address);
      });
      if (e->value.IsNull() || (e->value.IsSequence() && e->value.size() == 0)) {
        error(*e, "at least one target HOST:PORT is required");
      }
    }
    if (const Entry* e = view.find("max_connections")) readInt(*e, u.max_connections, 1, kMaxInt);
    if (const Entry* e = view.find("max_pending")) readInt(*e, u.max_pending, 0, kMaxInt);
    if (const Entry* e = view.find("pending_timeout")) {
      readDuration(*e, u.pending_timeout, Zero::kAllowed);
    }
    if (const Entry* e = view.find("connect_timeout")) readDuration(*e, u.connect_timeout);
    if (const Entry* e = view.find("response_timeout")) readDuration(*e, u.response_timeout);
    if (const Entry* e = view.find("idle_timeout")) readDuration(*e, u.idle_timeout);
  }

  void loadLimits(const Entry& entry) {
    MapView view = openMap(entry, {});
    limits_readable_ = view.valid;
    for (const auto& [name, e] : view.entries) {
      if (!isPlainName(name)) {
        error(e.anchor,
              "limit name '" + name + "' may only contain letters, digits, '_', '-' and '.'");
      }
      LimitConfig limit;
      limit.name = name;
      loadLimit(e, limit);
      config_.limits.push_back(std::move(limit));
    }
  }

  void loadLimit(const Entry& entry, LimitConfig& l) {
    MapView view = openMap(entry, kLimitKeys);
    bool per_known = true;
    if (const Entry* e = view.find("per")) {
      per_known = readEnum(*e, l.per, kLimitScopeNames);
    }
    bool have_rate = false;
    if (const Entry* e = require(view, "rate")) have_rate = readRate(*e, l.rate);
    if (const Entry* e = view.find("burst")) {
      readBurst(*e, l.burst);
    } else if (have_rate) {
      l.burst = std::max(1.0, l.rate.count);
    }
    if (const Entry* e = view.find("shadow")) readBool(*e, l.shadow);
    if (const Entry* e = view.find("exempt")) readCidrs(*e, l.exempt);
    bool api_key = l.per == LimitScope::kApiKey;
    if (const Entry* e = view.find("missing")) {
      readEnum(*e, l.missing, kMissingKeyNames);
      if (per_known && !api_key) {
        error(e->anchor, entry.path + ".missing: only applies to limits with per: api_key");
      }
    }
    if (const Entry* e = view.find("overrides")) {
      if (per_known && !api_key) {
        error(e->anchor, entry.path + ".overrides: only applies to limits with per: api_key");
      }
      loadOverrides(*e, l, have_rate);
    }
    if (const Entry* e = view.find("store")) {
      if (readEnum(*e, l.store, kStoreKindNames) && l.store == StoreKind::kRedis) {
        redis_stores_.push_back(*e);
      }
    }
    if (const Entry* e = view.find("on_store_error")) {
      readEnum(*e, l.on_store_error, kStoreErrorPolicyNames);
    }
  }

  void loadOverrides(const Entry& entry, LimitConfig& l, bool have_rate) {
    MapView view = openMap(entry, {});
    for (const auto& [key, e] : view.entries) {
      if (key.empty() || key.size() > kMaxApiKeyBytes) {
        error(e.anchor, entry.path + ": an API key must be 1 to " +
                            std::to_string(kMaxApiKeyBytes) + " bytes long");
        continue;
      }
      if (!e.value.IsMap()) {
        error(e, "expected a map such as { rate: 1000/s, burst: 2000 }, got " + describe(e.value));
        continue;
      }
      MapView fields = openMap(e, kOverrideKeys);
      if (fields.entries.empty()) {
        error(e, "an override needs a rate, a burst or both");
        continue;
      }
      // An override inherits what it leaves out: the limit's rate, and the
      // burst that rate implies.
      KeyOverride override_value;
      bool ok = have_rate;
      override_value.rate = l.rate;
      if (const Entry* r = fields.find("rate")) ok = readRate(*r, override_value.rate);
      if (const Entry* b = fields.find("burst")) {
        ok = readBurst(*b, override_value.burst) && ok;
      } else {
        override_value.burst = std::max(1.0, override_value.rate.count);
      }
      if (ok) l.overrides[key] = override_value;
    }
  }

  void loadRedis(const Entry& entry) {
    MapView view = openMap(entry, kRedisKeys);
    if (!view.valid) return;
    RedisConfig r;
    if (const Entry* e = view.find("address")) readAddress(*e, r.address, Port::kZeroRejected);
    if (const Entry* e = view.find("timeout")) readDuration(*e, r.timeout);
    if (const Entry* e = view.find("pool_size")) readInt(*e, r.pool_size, 1, kMaxPoolSize);
    if (const Entry* e = view.find("key_prefix")) {
      if (auto text = readString(*e)) r.key_prefix = *text;
    }
    config_.redis = r;
  }

  void loadLimiter(const Entry& entry) {
    MapView view = openMap(entry, kLimiterKeys);
    LimiterConfig& l = config_.limiter;
    if (const Entry* e = view.find("sweep_interval")) readDuration(*e, l.sweep_interval);
    if (const Entry* e = view.find("max_keys")) readInt(*e, l.max_keys, 1, kMaxInt64);
    if (const Entry* e = view.find("response_headers")) readBool(*e, l.response_headers);
    if (const Entry* e = view.find("header_style")) {
      readEnum(*e, l.header_style, kHeaderStyleNames);
    }
  }

  void loadRoutes(const Entry& entry) {
    bool is_list = forEachItem(entry, [&](const Entry& item) {
      RouteConfig route;
      RouteInfo info;
      info.path = item.path;
      info.mark = markOf(item);
      loadRoute(item, route, info);
      config_.routes.push_back(std::move(route));
      routes_.push_back(std::move(info));
    });
    if (is_list && config_.routes.empty()) error(entry, "at least one route is required");
  }

  void loadRoute(const Entry& entry, RouteConfig& r, RouteInfo& info) {
    if (!entry.value.IsMap()) {
      error(entry, "expected a map with path_prefix and upstream, got " + describe(entry.value));
      return;
    }
    MapView view = openMap(entry, kRouteKeys);
    bool prefix_ok = false;
    if (const Entry* e = require(view, "path_prefix")) {
      info.path_prefix = *e;
      if (auto text = scalar(*e, "a path such as /api/")) {
        bool clean = std::none_of(text->begin(), text->end(), [](char c) {
          return c == '?' || c == '#' || std::isspace(static_cast<unsigned char>(c)) != 0 ||
                 std::iscntrl(static_cast<unsigned char>(c)) != 0;
        });
        if (text->empty() || text->front() != '/') {
          error(*e, "path_prefix must start with '/', got '" + *text + "'");
        } else if (!clean) {
          error(*e,
                "path_prefix must be a plain path (no spaces, '?' or '#'), got '" + *text + "'");
        } else {
          r.path_prefix = *text;
          r.name = *text;
          prefix_ok = true;
        }
      }
    }
    if (const Entry* e = view.find("name")) {
      if (auto text = readString(*e)) {
        if (text->empty()) {
          error(*e, "a route name must not be empty (leave it out to use the path_prefix)");
        } else {
          r.name = *text;
          info.name = *e;
        }
      }
    }
    if (const Entry* e = view.find("host")) {
      if (auto text = readString(*e)) {
        std::string host = toLower(*text);
        bool bracketed = host.size() > 2 && host.front() == '[' && host.back() == ']';
        bool plain = std::all_of(host.begin(), host.end(), [](char c) {
          return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '.' || c == '-' ||
                 c == '_';
        });
        if (!bracketed && host.find(':') != std::string::npos) {
          error(*e, "host must not include a port (the port is ignored when matching)");
        } else if (!bracketed && !plain) {
          error(*e, "'" + *text + "' is not a valid host name");
        } else {
          r.host = host;
        }
      }
    }
    if (const Entry* e = view.find("methods")) {
      forEachItem(*e, [&](const Entry& item) {
        auto text = scalar(item, "an HTTP method such as GET");
        if (!text) return;
        if (!isToken(*text)) {
          error(item, "'" + *text + "' is not a valid HTTP method");
          return;
        }
        std::string method = toUpper(*text);
        if (std::find(r.methods.begin(), r.methods.end(), method) == r.methods.end()) {
          r.methods.push_back(method);
        }
      });
    }
    if (const Entry* e = require(view, "upstream")) {
      if (auto text = scalar(*e, "an upstream name")) {
        r.upstream = *text;
        info.upstream = *e;
      }
    }
    if (const Entry* e = view.find("limits")) {
      forEachItem(*e, [&](const Entry& item) {
        auto text = scalar(item, "a limit name");
        if (!text) return;
        if (std::find(r.limits.begin(), r.limits.end(), *text) != r.limits.end()) {
          error(item, "limit '" + *text + "' is listed twice");
          return;
        }
        r.limits.push_back(*text);
        info.limits.push_back(item);
      });
    }
    info.complete = prefix_ok && info.upstream.has_value();
  }

  // ---- cross-references (after every section is read) ----

  void checkReferences() {
    std::vector<std::string> upstream_names;
    for (const auto& u : config_.upstreams) upstream_names.push_back(u.name);
    std::vector<std::string> limit_names;
    for (const auto& l : config_.limits) limit_names.push_back(l.name);

    for (std::size_t i = 0; i < routes_.size(); ++i) {
      const RouteInfo& info = routes_[i];
      const RouteConfig& route = config_.routes[i];
      // Without a usable upstreams (or limits) section, every reference
      // would fail too; the section's own error says it all.
      if (upstreams_defined_ && info.upstream && config_.findUpstream(route.upstream) == nullptr) {
        error(*info.upstream, "unknown upstream '" + route.upstream + "'" +
                                  suggestion(route.upstream, upstream_names));
      }
      for (const Entry& item : info.limits) {
        if (!limits_readable_) break;
        std::string name = item.value.Scalar();
        if (config_.findLimit(name) == nullptr) {
          std::string known =
              limit_names.empty() ? " (no limits are defined)" : suggestion(name, limit_names);
          error(item, "unknown limit '" + name + "'" + known);
        }
      }
    }
    checkDuplicateRoutes();
    if (!config_.redis) {
      for (const Entry& e : redis_stores_) {
        error(e, "store: redis needs a top-level redis: block");
      }
    }
  }

  void checkDuplicateRoutes() {
    std::map<std::string, std::size_t> by_match;  // path_prefix, host, methods -> route
    std::map<std::string, std::size_t> by_name;
    for (std::size_t i = 0; i < routes_.size(); ++i) {
      const RouteInfo& info = routes_[i];
      const RouteConfig& route = config_.routes[i];
      if (!info.path_prefix || route.path_prefix.empty()) continue;
      std::vector<std::string> methods = route.methods;
      std::sort(methods.begin(), methods.end());
      std::string match = route.path_prefix + '\n' + route.host + '\n' + joined(methods);
      auto [first, inserted] = by_match.emplace(match, i);
      if (!inserted) {
        const RouteInfo& other = routes_[first->second];
        error(info.mark, info.path + ": same path_prefix, host and methods as " + other.path +
                             " (line " + std::to_string(other.mark.line + 1) +
                             "); this route can never match");
        continue;
      }
      // Defaulted names may repeat (same prefix, different host or methods);
      // a name given explicitly must be unique.
      auto [named, fresh] = by_name.emplace(route.name, i);
      if (!fresh) {
        const RouteInfo& other = routes_[named->second];
        if (info.name || other.name) {
          const Entry& where = info.name ? *info.name : *info.path_prefix;
          error(where, "duplicate route name '" + route.name + "' (also " + other.path +
                           " at line " + std::to_string(other.mark.line + 1) + ")");
        }
      }
    }
  }

  Config config_;
  std::vector<RouteInfo> routes_;    // parallel to config_.routes
  std::vector<Entry> redis_stores_;  // `store: redis` values, checked against redis:
  bool upstreams_defined_ = false;   // upstreams is a non-empty map
  bool limits_readable_ = true;      // limits is absent or a map
};

}  // namespace

std::string ConfigError::toString() const {
  if (line <= 0) return file + ": " + message;
  return file + ":" + std::to_string(line) + ":" + std::to_string(column) + ": " + message;
}

LoadResult loadConfigString(const std::string& yaml, const std::string& file_name) {
  try {
    return Loader(file_name).run(yaml);
  } catch (...) {
    // Only allocation failure can get here; still no exception escapes.
    LoadResult result;
    result.errors.push_back(ConfigError{file_name, 0, 0, "cannot load the config: out of memory"});
    return result;
  }
}

LoadResult loadConfigFile(const std::string& path) {
  auto fail = [&](const std::string& message) {
    LoadResult result;
    result.errors.push_back(ConfigError{path, 0, 0, message});
    return result;
  };
  try {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec))
      return fail("cannot read the config: is a directory");
    std::ifstream in(path, std::ios::binary);
    if (!in) return fail(std::string("cannot open the config: ") + std::strerror(errno));
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) return fail(std::string("cannot read the config: ") + std::strerror(errno));
    return loadConfigString(text.str(), path);
  } catch (const std::exception& e) {
    return fail(std::string("cannot read the config: ") + e.what());
  }
}

}  // namespace sluice::config
