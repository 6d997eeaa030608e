#include "proxy/app/explain.h"

#include <cstdio>
#include <optional>
#include <string_view>

#include "proxy/client/api_key.h"
#include "proxy/client/client_ip.h"
#include "proxy/client/key_hash.h"
#include "proxy/config/loader.h"
#include "proxy/http/message_parser.h"
#include "proxy/http/path_normalize.h"
#include "proxy/routing/route_table.h"

namespace sluice::app {
namespace {

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

using Headers = std::vector<std::pair<std::string, std::string>>;

int headerCount(const Headers& headers, std::string_view name) {
  int n = 0;
  for (const auto& field : headers) n += http::equalsIgnoreCase(field.first, name) ? 1 : 0;
  return n;
}

std::string fmtBurst(double b) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", b);
  return buf;
}

}  // namespace

int explainMain(const std::vector<std::string>& args) {
  std::string config_path;
  std::string peer_text = "127.0.0.1";
  std::vector<std::pair<std::string, std::string>> headers;
  std::vector<std::string> positional;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if ((a == "--config" || a == "--peer" || a == "-H") && i + 1 >= args.size()) return usage();
    if (a == "--config") {
      config_path = args[++i];
    } else if (a == "--peer") {
      peer_text = args[++i];
    } else if (a == "-H") {
      const std::string& h = args[++i];
      std::size_t colon = h.find(':');
      if (colon == std::string::npos) return usage();
      headers.emplace_back(trim(std::string_view(h).substr(0, colon)),
                           trim(std::string_view(h).substr(colon + 1)));
    } else {
      positional.push_back(a);
    }
  }
  if (config_path.empty() || positional.size() != 2) return usage();
  auto loaded = config::loadConfigFile(config_path);
  if (!loaded.ok()) {
    for (const auto& e : loaded.errors) std::printf("%s\n", e.toString().c_str());
    return 1;
  }
  const config::Config& cfg = *loaded.config;
  const std::string& method = positional[0];
  std::string_view url = positional[1];

  // Host: the -H Host header, else the URL's authority.
  std::string host;
  std::string target(url);
  if (std::size_t scheme = url.find("://"); scheme != std::string_view::npos) {
    std::string_view rest = url.substr(scheme + 3);
    std::size_t slash = rest.find('/');
    host = std::string(rest.substr(0, slash));
    target = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  }
  auto header = [&](std::string_view name) -> std::optional<std::string> {
    for (const auto& [k, v] : headers) {
      if (http::equalsIgnoreCase(k, name)) return v;
    }
    return std::nullopt;
  };
  if (auto h = header("host")) host = *h;
  std::string path(routing::requestPath(target));
  std::string query;
  if (std::size_t q = target.find('?'); q != std::string::npos) query = target.substr(q + 1);

  std::printf("request: %s %s (host %s)\n", method.c_str(), target.c_str(),
              host.empty() ? "-" : host.c_str());
  std::string_view route_path = path;
  http::PathBuffers bufs;
  if (cfg.server.normalize_path) {
    const http::NormalizedPath n = http::normalizePath(path, bufs);
    if (!n.ok()) {
      std::printf("path: cannot be normalized: sluice answers 400\n");
      return 0;
    }
    if (n.forward != path)
      std::printf("path: normalized to %.*s\n", static_cast<int>(n.forward.size()),
                  n.forward.data());
    route_path = n.route;
  }
  routing::RouteTable table(cfg.routes, cfg.server.normalize_path
                                            ? routing::PrefixForm::kNormalized
                                            : routing::PrefixForm::kAsWritten);
  const routing::Route* route = table.match(route_path, host, method);
  if (route == nullptr) {
    std::printf("route: none: sluice answers 404\n");
    return 0;
  }
  const config::RouteConfig& rc = cfg.routes[route->index];
  std::printf("route: %s (path_prefix %s, upstream %s)\n", route->name.c_str(),
              rc.path_prefix.c_str(), rc.upstream.c_str());
  if (headerCount(headers, cfg.clients.api_key.header) > 1) {
    std::printf("api key: several %s lines: sluice answers 400\n",
                cfg.clients.api_key.header.c_str());
    return 0;
  }

  // Client identity, exactly as the proxy computes it.
  bool is_v4 = false;
  auto peer = config::parseIp(peer_text, &is_v4);
  if (!peer) {
    std::fprintf(stderr, "explain: --peer %s is not an IP address\n", peer_text.c_str());
    return 2;
  }
  std::string xff;
  for (const auto& [k, v] : headers) {
    if (http::equalsIgnoreCase(k, "x-forwarded-for")) {
      if (!xff.empty()) xff += ", ";
      xff += v;
    }
  }
  const client::ClientIp cip = client::clientIp(*peer, xff, cfg.clients.trusted_proxies);
  const bool trusted = client::inAny(*peer, cfg.clients.trusted_proxies);
  const int v4 = cfg.clients.ipv4_prefix;
  const int v6 = cfg.clients.ipv6_prefix;
  const client::IpAddr ip_key = client::ipKey(cip.ip, v4, v6);
  std::printf("client ip: %s", config::formatIp(cip.ip).c_str());
  if (!trusted) {
    std::printf(" (the peer; %s)\n",
                xff.empty() ? "no X-Forwarded-For" : "X-Forwarded-For ignored: peer not trusted");
  } else if (cip.xff_invalid) {
    std::printf(" (the peer: X-Forwarded-For has an unparsable entry)\n");
  } else {
    std::printf(" (from X-Forwarded-For \"%s\" via trusted peer %s)\n", xff.c_str(),
                peer_text.c_str());
  }
  const std::string ip_key_text = client::ipKeyText(ip_key, v4, v6);
  std::printf("ip key: %s\n", ip_key_text.c_str());

  auto key_header = header(cfg.clients.api_key.header);
  const client::ApiKey key =
      client::apiKey(key_header ? std::optional<std::string_view>(*key_header) : std::nullopt,
                     query, cfg.clients.api_key.query);
  std::string key_fp;
  switch (key.status) {
    case client::ApiKeyStatus::kFound:
      key_fp = client::fingerprint(key.value);
      std::printf("api key: fingerprint %s\n", key_fp.c_str());
      break;
    case client::ApiKeyStatus::kMissing:
      std::printf("api key: none\n");
      break;
    case client::ApiKeyStatus::kTooLong:
      std::printf("api key: longer than %zu bytes: sluice answers 400\n", client::kMaxApiKeyBytes);
      return 0;
  }

  std::printf("limits:%s\n", rc.limits.empty() ? " none" : "");
  for (const std::string& name : rc.limits) {
    const config::LimitConfig* lc = cfg.findLimit(name);
    if (lc == nullptr) continue;
    config::Rate rate = lc->rate;
    double burst = lc->burst;
    std::string key_desc;
    std::string notes;
    switch (lc->per) {
      case config::LimitScope::kGlobal:
        key_desc = "global";
        break;
      case config::LimitScope::kIp:
        key_desc = ip_key_text;
        break;
      case config::LimitScope::kApiKey:
        if (key.status == client::ApiKeyStatus::kFound) {
          key_desc = key_fp;
          if (auto it = lc->overrides.find(key.value); it != lc->overrides.end()) {
            rate = it->second.rate;
            burst = it->second.burst;
            notes += " override";
          }
        } else if (lc->missing == config::MissingKey::kIp) {
          key_desc = ip_key_text + " (no key: missing=ip)";
        } else if (lc->missing == config::MissingKey::kSkip) {
          key_desc = "- (no key: missing=skip, not checked)";
        } else {
          key_desc = "- (no key: missing=reject, sluice answers 401)";
        }
        break;
    }
    if (lc->shadow) notes += " shadow";
    if (!lc->exempt.empty() && client::inAny(cip.ip, lc->exempt)) notes += " exempt";
    if (lc->store == config::StoreKind::kRedis) notes += " store=redis";
    std::printf("  %s: per=%s rate=%s burst=%s key=%s%s\n", lc->name.c_str(),
                std::string(config::toString(lc->per)).c_str(), rate.toString().c_str(),
                fmtBurst(burst).c_str(), key_desc.c_str(), notes.c_str());
  }
  return 0;
}

}  // namespace sluice::app
