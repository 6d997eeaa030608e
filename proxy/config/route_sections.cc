// The sections about where requests go: upstreams: and routes:.

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <string>
#include <string_view>

#include "proxy/config/names.h"
#include "proxy/config/sections.h"

namespace sluice::config {
namespace {

constexpr std::int64_t kMaxInt = 2147483647;

constexpr std::string_view kUpstreamKeys[] = {
    "targets",         "max_connections",  "max_pending", "pending_timeout",
    "connect_timeout", "response_timeout", "idle_timeout", "tls",
    "tls_ca",          "tls_server_name"};
constexpr std::string_view kRouteKeys[] = {"name",     "path_prefix", "host",    "methods",
                                           "upstream", "limits",      "upgrades"};

std::string toLower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

std::string toUpper(std::string text) {
  for (char& c : text) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return text;
}

// One upstreams.NAME map: at least one target, then the pool settings.
void loadUpstream(Reader& reader, const Entry& entry, UpstreamConfig& u) {
  MapView view = reader.openMap(entry, kUpstreamKeys);
  if (const Entry* e = reader.require(view, "targets")) {
    reader.forEachItem(*e, [&](const Entry& item) {
      Address address;
      if (reader.readAddress(item, address, Port::kZeroRejected)) u.targets.push_back(address);
    });
    if (e->value.IsNull() || (e->value.IsSequence() && e->value.size() == 0)) {
      reader.error(*e, "at least one target HOST:PORT is required");
    }
  }
  if (const Entry* e = view.find("max_connections")) {
    reader.readInt(*e, u.max_connections, 1, kMaxInt);
  }
  if (const Entry* e = view.find("max_pending")) reader.readInt(*e, u.max_pending, 0, kMaxInt);
  if (const Entry* e = view.find("pending_timeout")) {
    reader.readDuration(*e, u.pending_timeout, Zero::kAllowed);
  }
  if (const Entry* e = view.find("connect_timeout")) reader.readDuration(*e, u.connect_timeout);
  if (const Entry* e = view.find("response_timeout")) reader.readDuration(*e, u.response_timeout);
  if (const Entry* e = view.find("idle_timeout")) reader.readDuration(*e, u.idle_timeout);
  if (const Entry* e = view.find("tls")) reader.readBool(*e, u.tls);
  if (const Entry* e = view.find("tls_ca")) {
    if (auto text = reader.readString(*e)) {
      u.tls_ca = *text;
      u.tls_ca_at = Reader::positionOf(*e);
    }
  }
  if (const Entry* e = view.find("tls_server_name")) {
    if (auto text = reader.readString(*e)) u.tls_server_name = *text;
  }
}

// path_prefix: a plain absolute path; it is also the route's default name.
void readPathPrefix(Reader& reader, const Entry& e, RouteConfig& r) {
  auto text = reader.scalar(e, "a path such as /api/");
  if (!text) return;
  bool clean = std::none_of(text->begin(), text->end(), [](char c) {
    return c == '?' || c == '#' || std::isspace(static_cast<unsigned char>(c)) != 0 ||
           std::iscntrl(static_cast<unsigned char>(c)) != 0;
  });
  if (text->empty() || text->front() != '/') {
    reader.error(e, "path_prefix must start with '/', got '" + *text + "'");
  } else if (!clean) {
    reader.error(e,
                 "path_prefix must be a plain path (no spaces, '?' or '#'), got '" + *text + "'");
  } else {
    r.path_prefix = *text;
    r.name = *text;
  }
}

// name: replaces the path_prefix default; kept in `info` because an explicit
// name must be unique.
void readRouteName(Reader& reader, const Entry& e, RouteConfig& r, RouteInfo& info) {
  auto text = reader.readString(e);
  if (!text) return;
  if (text->empty()) {
    reader.error(e, "a route name must not be empty (leave it out to use the path_prefix)");
  } else {
    r.name = *text;
    info.name = e;
  }
}

// host: a host name or a bracketed IPv6 literal, lower-cased, without a port.
void readHost(Reader& reader, const Entry& e, RouteConfig& r) {
  auto text = reader.readString(e);
  if (!text) return;
  std::string host = toLower(*text);
  bool bracketed = host.size() > 2 && host.front() == '[' && host.back() == ']';
  bool plain = std::all_of(host.begin(), host.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '.' || c == '-' || c == '_';
  });
  if (!bracketed && host.find(':') != std::string::npos) {
    reader.error(e, "host must not include a port (the port is ignored when matching)");
  } else if (!bracketed && !plain) {
    reader.error(e, "'" + *text + "' is not a valid host name");
  } else {
    r.host = host;
  }
}

// methods: tokens, upper-cased, each kept once.
void readMethods(Reader& reader, const Entry& e, RouteConfig& r) {
  reader.forEachItem(e, [&](const Entry& item) {
    auto text = reader.scalar(item, "an HTTP method such as GET");
    if (!text) return;
    if (!isToken(*text)) {
      reader.error(item, "'" + *text + "' is not a valid HTTP method");
      return;
    }
    std::string method = toUpper(*text);
    if (std::find(r.methods.begin(), r.methods.end(), method) == r.methods.end()) {
      r.methods.push_back(method);
    }
  });
}

// upgrades: Upgrade protocol tokens, lower-cased, each kept once; h2c is
// HTTP/2's cleartext upgrade, which sluice never tunnels.
void readUpgrades(Reader& reader, const Entry& e, RouteConfig& r) {
  std::vector<std::string> out;
  const bool is_list = reader.forEachItem(e, [&](const Entry& item) {
    auto text = reader.scalar(item, "a protocol such as websocket");
    if (!text) return;
    if (!isToken(*text)) {
      reader.error(item, "'" + *text + "' is not a valid protocol name");
      return;
    }
    std::string token = toLower(*text);
    if (token == "h2c") {
      reader.error(item, "h2c is never tunnelled (HTTP/2 upgrades are not supported)");
      return;
    }
    if (std::find(out.begin(), out.end(), token) == out.end()) out.push_back(token);
  });
  if (is_list) r.upgrades = std::move(out);
}

// limits: names, each once; checked against limits: by checkReferences.
void readRouteLimits(Reader& reader, const Entry& e, RouteConfig& r, RouteInfo& info) {
  reader.forEachItem(e, [&](const Entry& item) {
    auto text = reader.scalar(item, "a limit name");
    if (!text) return;
    if (std::find(r.limits.begin(), r.limits.end(), *text) != r.limits.end()) {
      reader.error(item, "limit '" + *text + "' is listed twice");
      return;
    }
    r.limits.push_back(*text);
    info.limits.push_back(item);
  });
}

// One item of routes:, in the order its keys are checked.
void loadRoute(Reader& reader, const Entry& entry, RouteConfig& r, RouteInfo& info) {
  if (!entry.value.IsMap()) {
    reader.error(entry,
                 "expected a map with path_prefix and upstream, got " + describe(entry.value));
    return;
  }
  MapView view = reader.openMap(entry, kRouteKeys);
  if (const Entry* e = reader.require(view, "path_prefix")) {
    info.path_prefix = *e;
    readPathPrefix(reader, *e, r);
  }
  if (const Entry* e = view.find("name")) readRouteName(reader, *e, r, info);
  if (const Entry* e = view.find("host")) readHost(reader, *e, r);
  if (const Entry* e = view.find("methods")) readMethods(reader, *e, r);
  if (const Entry* e = view.find("upgrades")) readUpgrades(reader, *e, r);
  if (const Entry* e = reader.require(view, "upstream")) {
    if (auto text = reader.scalar(*e, "an upstream name")) {
      r.upstream = *text;
      info.upstream = *e;
    }
  }
  if (const Entry* e = view.find("limits")) readRouteLimits(reader, *e, r, info);
}

}  // namespace

void loadUpstreams(Reader& reader, const Entry& entry, Draft& draft) {
  MapView view = reader.openMap(entry, {});
  if (!view.valid) return;
  if (view.entries.empty()) {
    reader.error(entry, "at least one upstream is required");
    return;
  }
  draft.upstreams_defined = true;
  for (const auto& [name, e] : view.entries) {
    checkPlainName(reader, e, name, "upstream");
    UpstreamConfig upstream;
    upstream.name = name;
    loadUpstream(reader, e, upstream);
    draft.config.upstreams.push_back(std::move(upstream));
  }
}

void loadRoutes(Reader& reader, const Entry& entry, Draft& draft) {
  bool is_list = reader.forEachItem(entry, [&](const Entry& item) {
    RouteConfig route;
    RouteInfo info;
    info.path = item.path;
    info.mark = Reader::markOf(item);
    loadRoute(reader, item, route, info);
    draft.config.routes.push_back(std::move(route));
    draft.routes.push_back(std::move(info));
  });
  if (is_list && draft.config.routes.empty()) {
    reader.error(entry, "at least one route is required");
  }
}

}  // namespace sluice::config
