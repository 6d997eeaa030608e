// The checks that need more than one section: references from routes to
// upstreams and limits, routes that repeat one another, and store: redis
// against the redis: block.

#include <algorithm>
#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "proxy/config/sections.h"
#include "proxy/config/suggest.h"

namespace sluice::config {
namespace {

// Each route's upstream and limits must name ones that exist.
void checkRouteReferences(Reader& reader, const Draft& draft) {
  std::vector<std::string> upstream_names;
  for (const auto& u : draft.config.upstreams) upstream_names.push_back(u.name);
  std::vector<std::string> limit_names;
  for (const auto& l : draft.config.limits) limit_names.push_back(l.name);

  for (std::size_t i = 0; i < draft.routes.size(); ++i) {
    const RouteInfo& info = draft.routes[i];
    const RouteConfig& route = draft.config.routes[i];
    // Without a usable upstreams (or limits) section, every reference
    // would fail too; the section's own error says it all.
    if (draft.upstreams_defined && info.upstream &&
        draft.config.findUpstream(route.upstream) == nullptr) {
      reader.error(*info.upstream, "unknown upstream '" + route.upstream + "'" +
                                       suggestion(route.upstream, upstream_names));
    }
    for (const Entry& item : info.limits) {
      if (!draft.limits_readable) break;
      std::string name = item.value.Scalar();
      if (draft.config.findLimit(name) == nullptr) {
        std::string known =
            limit_names.empty() ? " (no limits are defined)" : suggestion(name, limit_names);
        reader.error(item, "unknown limit '" + name + "'" + known);
      }
    }
  }
}

// A route matching what an earlier one matches is dead; an explicit name must be unique.
void checkDuplicateRoutes(Reader& reader, const Draft& draft) {
  std::map<std::string, std::size_t> by_match;  // path_prefix, host, methods -> route
  std::map<std::string, std::size_t> by_name;
  for (std::size_t i = 0; i < draft.routes.size(); ++i) {
    const RouteInfo& info = draft.routes[i];
    const RouteConfig& route = draft.config.routes[i];
    if (!info.path_prefix || route.path_prefix.empty()) continue;
    std::vector<std::string> methods = route.methods;
    std::sort(methods.begin(), methods.end());
    std::string match = route.path_prefix + '\n' + route.host + '\n' + joined(methods);
    auto [first, inserted] = by_match.emplace(match, i);
    if (!inserted) {
      const RouteInfo& other = draft.routes[first->second];
      reader.error(info.mark, info.path + ": same path_prefix, host and methods as " + other.path +
                                  " (line " + std::to_string(other.mark.line + 1) +
                                  "); this route can never match");
      continue;
    }
    // Defaulted names may repeat (same prefix, different host or methods);
    // a name given explicitly must be unique.
    auto [named, fresh] = by_name.emplace(route.name, i);
    if (!fresh) {
      const RouteInfo& other = draft.routes[named->second];
      if (info.name || other.name) {
        const Entry& where = info.name ? *info.name : *info.path_prefix;
        reader.error(where, "duplicate route name '" + route.name + "' (also " + other.path +
                                " at line " + std::to_string(other.mark.line + 1) + ")");
      }
    }
  }
}

}  // namespace

void checkReferences(Reader& reader, const Draft& draft) {
  checkRouteReferences(reader, draft);
  checkDuplicateRoutes(reader, draft);
  if (!draft.config.redis) {
    for (const Entry& e : draft.redis_stores) {
      reader.error(e, "store: redis needs a top-level redis: block");
    }
  }
}

}  // namespace sluice::config
