#include "proxy/routing/route_table.h"

#include <cctype>

#include "proxy/http/path_normalize.h"

namespace sluice::routing {
namespace {

bool hostEquals(std::string_view a, std::string_view lower_b) {
  if (a.size() != lower_b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != lower_b[i]) return false;
  }
  return true;
}

}  // namespace

std::string_view stripPort(std::string_view host) {
  if (!host.empty() && host.front() == '[') {
    std::size_t close = host.find(']');
    return close == std::string_view::npos ? host : host.substr(0, close + 1);
  }
  std::size_t colon = host.rfind(':');
  return colon == std::string_view::npos ? host : host.substr(0, colon);
}

std::string_view hostForMatching(std::string_view host) {
  std::string_view bare = stripPort(host);
  if (bare.size() > 1 && bare.back() == '.') bare.remove_suffix(1);
  return bare;
}

std::string_view requestPath(std::string_view target) {
  if (!target.empty() && target.front() != '/') {
    // absolute-form: scheme://authority/path?query
    std::size_t scheme = target.find("://");
    if (scheme != std::string_view::npos) {
      std::size_t slash = target.find('/', scheme + 3);
      target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
    }
  }
  std::size_t end = 0;  // find_first_of("?#") calls memchr per byte
  while (end < target.size() && target[end] != '?' && target[end] != '#') ++end;
  return target.substr(0, end);
}

RouteTable::RouteTable(const std::vector<config::RouteConfig>& routes, PrefixForm prefixes) {
  routes_.reserve(routes.size());
  http::PathBuffers buffers;
  for (std::size_t i = 0; i < routes.size(); ++i) {
    const auto& rc = routes[i];
    Route r;
    r.name = rc.name.empty() ? rc.path_prefix : rc.name;
    r.path_prefix = rc.path_prefix;
    if (prefixes == PrefixForm::kNormalized) {
      http::NormalizedPath n = http::normalizePath(rc.path_prefix, buffers);
      if (n.ok()) r.path_prefix = n.route;
    }
    for (char c : hostForMatching(rc.host)) {
      r.host.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    }
    for (const auto& m : rc.methods) {
      std::string up;
      for (char c : m) up.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
      r.methods.push_back(std::move(up));
    }
    r.index = i;
    routes_.push_back(std::move(r));
  }
}

const Route* RouteTable::match(std::string_view path, std::string_view host,
                               std::string_view method) const {
  std::string_view bare_host = hostForMatching(host);
  for (const Route& r : routes_) {
    if (!path.starts_with(r.path_prefix)) continue;
    if (!r.host.empty() && !hostEquals(bare_host, r.host)) continue;
    if (!r.methods.empty()) {
      bool ok = false;
      for (const auto& m : r.methods) {
        if (m == method) {
          ok = true;
          break;
        }
      }
      if (!ok) continue;
    }
    return &r;
  }
  return nullptr;
}

}  // namespace sluice::routing
