#include "proxy/app/explain.h"

#include <cstdio>
#include <optional>
#include <string_view>

#include "proxy/admission/plan.h"
#include "proxy/client/api_key.h"
#include "proxy/client/client_ip.h"
#include "proxy/client/key_hash.h"
#include "proxy/config/loader.h"
#include "proxy/http/message_parser.h"
#include "proxy/http/path_normalize.h"
#include "proxy/routing/route_table.h"

namespace sluice::app {
namespace {

using Headers = std::vector<std::pair<std::string, std::string>>;

int usage() {
  std::fprintf(stderr,
               "usage: sluice explain --config FILE [--peer IP] [-H \"Name: value\"]... "
               "METHOD URL\n");
  return 2;
}

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return std::string(s);
}

int headerCount(const Headers& headers, std::string_view name) {
  int n = 0;
  for (const auto& field : headers) n += http::equalsIgnoreCase(field.first, name) ? 1 : 0;
  return n;
}

const std::string* findHeader(const Headers& headers, std::string_view name) {
  for (const auto& [k, v] : headers) {
    if (http::equalsIgnoreCase(k, name)) return &v;
  }
  return nullptr;
}

std::string fmtBurst(double b) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", b);
  return buf;
}

struct Args {
  std::string config_path;
  std::string peer_text = "127.0.0.1";
  Headers headers;
  std::string method;
  std::string url;
};

// False on a usage error.
bool parseArgs(const std::vector<std::string>& args, Args* out) {
  std::vector<std::string> positional;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if ((a == "--config" || a == "--peer" || a == "-H") && i + 1 >= args.size()) return false;
    if (a == "--config") {
      out->config_path = args[++i];
    } else if (a == "--peer") {
      out->peer_text = args[++i];
    } else if (a == "-H") {
      const std::string& h = args[++i];
      const std::size_t colon = h.find(':');
      if (colon == std::string::npos) return false;
      out->headers.emplace_back(trim(std::string_view(h).substr(0, colon)),
                                trim(std::string_view(h).substr(colon + 1)));
    } else {
      positional.push_back(a);
    }
  }
  if (out->config_path.empty() || positional.size() != 2) return false;
  out->method = positional[0];
  out->url = positional[1];
  return true;
}

// The request as the proxy would see it: target, host, path and query.
struct Target {
  std::string target;
  std::string host;
  std::string path;
  std::string query;
};

Target targetOf(const Args& a) {
  Target t;
  std::string_view url = a.url;
  t.target = a.url;
  // Host: the -H Host header, else the URL's authority.
  if (std::size_t scheme = url.find("://"); scheme != std::string_view::npos) {
    std::string_view rest = url.substr(scheme + 3);
    const std::size_t slash = rest.find('/');
    t.host = std::string(rest.substr(0, slash));
    t.target = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  }
  if (const std::string* h = findHeader(a.headers, "host")) t.host = *h;
  t.path = std::string(routing::requestPath(t.target));
  if (std::size_t q = t.target.find('?'); q != std::string::npos) t.query = t.target.substr(q + 1);
  return t;
}

// Prints the path and route lines; null when the proxy answers before a route.
const config::RouteConfig* explainRoute(const config::Config& cfg, const Args& a, const Target& t) {
  std::string_view route_path = t.path;
  http::PathBuffers bufs;
  if (cfg.server.normalize_path) {
    const http::NormalizedPath n = http::normalizePath(t.path, bufs);
    if (!n.ok()) {
      std::printf("path: cannot be normalized: sluice answers 400\n");
      return nullptr;
    }
    if (n.forward != t.path) {
      std::printf("path: normalized to %.*s\n", static_cast<int>(n.forward.size()),
                  n.forward.data());
    }
    route_path = n.route;
  }
  const routing::RouteTable table(cfg.routes, cfg.server.normalize_path
                                                  ? routing::PrefixForm::kNormalized
                                                  : routing::PrefixForm::kAsWritten);
  const routing::Route* route = table.match(route_path, t.host, a.method);
  if (route == nullptr) {
    std::printf("route: none: sluice answers 404\n");
    return nullptr;
  }
  const config::RouteConfig& rc = cfg.routes[route->index];
  std::printf("route: %s (path_prefix %s, upstream %s)\n", route->name.c_str(),
              rc.path_prefix.c_str(), rc.upstream.c_str());
  return &rc;
}

// Prints who the client is to the limits: its address, network and API key.
void explainIdentity(const config::Config& cfg, const Args& a, const admission::RequestView& view,
                     admission::Identity& id) {
  const client::ClientIp& cip = id.clientIp();
  std::printf("client ip: %s", config::formatIp(cip.ip).c_str());
  if (!client::inAny(view.peer, cfg.clients.trusted_proxies)) {
    std::printf(" (the peer; %s)\n", view.xff.empty()
                                         ? "no X-Forwarded-For"
                                         : "X-Forwarded-For ignored: peer not trusted");
  } else if (cip.xff_invalid) {
    std::printf(" (the peer: X-Forwarded-For has an unparsable entry)\n");
  } else {
    std::printf(" (from X-Forwarded-For \"%.*s\" via trusted peer %s)\n",
                static_cast<int>(view.xff.size()), view.xff.data(), a.peer_text.c_str());
  }
  const auto& c = cfg.clients;
  std::printf("ip key: %s\n",
              client::ipKeyText(id.network(), c.ipv4_prefix, c.ipv6_prefix).c_str());
  const client::ApiKey& key = id.apiKey();
  switch (key.status) {
    case client::ApiKeyStatus::kFound:
      std::printf("api key: fingerprint %s\n", client::fingerprint(key.value).c_str());
      break;
    case client::ApiKeyStatus::kMissing:
      std::printf("api key: none\n");
      break;
    case client::ApiKeyStatus::kTooLong:
      std::printf("api key: longer than %zu bytes\n", client::kMaxApiKeyBytes);
      break;
  }
}

// The bucket a limit's planned key names, for people.
std::string describeKey(const admission::LimitKey& k, const config::Config& cfg,
                        admission::Identity& id) {
  const auto& c = cfg.clients;
  switch (k.kind) {
    case admission::KeyKind::kGlobal:
      return "global";
    case admission::KeyKind::kIp:
      return client::ipKeyText(id.network(), c.ipv4_prefix, c.ipv6_prefix);
    case admission::KeyKind::kApiKey:
      return client::fingerprint(id.apiKey().value);
    case admission::KeyKind::kIpNoKey:
      return client::ipKeyText(id.network(), c.ipv4_prefix, c.ipv6_prefix) +
             " (no key: missing=ip)";
    case admission::KeyKind::kSkip:
      return "- (no key: missing=skip, not checked)";
    case admission::KeyKind::kReject:
      return "- (no key: missing=reject, sluice answers 401)";
    case admission::KeyKind::kKeyTooLong:
      break;
  }
  return "- (key longer than 256 bytes, sluice answers 400)";
}

// Prints each limit of the route with the bucket the request draws from,
// planned as the proxy plans it.
void explainLimits(const config::Config& cfg, const config::RouteConfig& rc,
                   admission::Identity& id) {
  std::printf("limits:%s\n", rc.limits.empty() ? " none" : "");
  for (const std::string& name : rc.limits) {
    const config::LimitConfig* lc = cfg.findLimit(name);
    if (lc == nullptr) continue;
    const admission::LimitKey k = admission::limitKey(*lc, id);
    config::Rate rate = lc->rate;
    double burst = lc->burst;
    std::string notes;
    if (k.kind == admission::KeyKind::kApiKey) {
      if (auto it = lc->overrides.find(id.apiKey().value); it != lc->overrides.end()) {
        rate = it->second.rate;
        burst = it->second.burst;
        notes += " override";
      }
    }
    if (lc->shadow) notes += " shadow";
    if (k.exempt) notes += " exempt";
    if (lc->store == config::StoreKind::kRedis) notes += " store=redis";
    std::printf("  %s: per=%s rate=%s burst=%s key=%s%s\n", lc->name.c_str(),
                std::string(config::toString(lc->per)).c_str(), rate.toString().c_str(),
                fmtBurst(burst).c_str(), describeKey(k, cfg, id).c_str(), notes.c_str());
  }
}

}  // namespace

int explainMain(const std::vector<std::string>& args) {
  Args a;
  if (!parseArgs(args, &a)) return usage();
  auto loaded = config::loadConfigFile(a.config_path);
  if (!loaded.ok()) {
    for (const auto& e : loaded.errors) std::printf("%s\n", e.toString().c_str());
    return 1;
  }
  const config::Config& cfg = *loaded.config;
  const Target t = targetOf(a);
  std::printf("request: %s %s (host %s)\n", a.method.c_str(), t.target.c_str(),
              t.host.empty() ? "-" : t.host.c_str());
  const config::RouteConfig* rc = explainRoute(cfg, a, t);
  if (rc == nullptr) return 0;
  const std::string& key_header = cfg.clients.api_key.header;
  if (headerCount(a.headers, key_header) > 1) {
    std::printf("api key: several %s lines: sluice answers 400\n", key_header.c_str());
    return 0;
  }
  // The request's identifying parts, handed to the planner as the session does.
  admission::RequestView view;
  bool is_v4 = false;
  const auto peer = config::parseIp(a.peer_text, &is_v4);
  if (!peer) {
    std::fprintf(stderr, "explain: --peer %s is not an IP address\n", a.peer_text.c_str());
    return 2;
  }
  view.peer = *peer;
  std::string xff;
  for (const auto& [k, v] : a.headers) {
    if (!http::equalsIgnoreCase(k, "x-forwarded-for")) continue;
    if (!xff.empty()) xff += ", ";
    xff += v;
  }
  view.xff = xff;
  if (const std::string* key = findHeader(a.headers, key_header)) {
    view.api_key_header = *key;
    view.has_api_key_header = true;
  }
  view.query = t.query;
  admission::Identity id(cfg.clients, view);
  explainIdentity(cfg, a, view, id);
  explainLimits(cfg, *rc, id);
  return 0;
}

}  // namespace sluice::app
