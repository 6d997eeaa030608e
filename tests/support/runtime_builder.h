#pragma once
// Builds the runtime snapshot a test's requests run against from YAML, the
// way app.cc's buildRuntime does minus admission and the access log (a test
// that needs admission sets Runtime::admission itself).

#include <memory>
#include <string>
#include <utility>

#include "proxy/config/loader.h"
#include "proxy/exchange/runtime.h"
#include "proxy/metrics/metrics.h"
#include "proxy/upstream/shared_pool.h"

namespace sluice::testing {

// The compiled runtime for `yaml`, its stats in `registry`; null if the YAML
// does not load or a target does not resolve.
inline std::shared_ptr<exchange::Runtime> buildRuntime(const std::string& yaml,
                                                       metrics::Registry& registry) {
  config::LoadResult loaded = config::loadConfigString(yaml, "test.yaml");
  if (!loaded.ok()) return nullptr;
  auto rt = std::make_shared<exchange::Runtime>(loaded.config);
  for (const auto& up : loaded.config->upstreams) {
    std::string error;
    auto pool = upstream::SharedPool::create(up, &error);
    if (!pool) return nullptr;
    rt->pools.push_back(std::move(pool));
    rt->pool_stats.push_back(registry.upstream(up.name));
  }
  rt->unmatched_stats = registry.route("unmatched");
  for (const auto& route : loaded.config->routes) {
    exchange::RouteRuntime rr;
    for (std::size_t i = 0; i < loaded.config->upstreams.size(); ++i) {
      if (loaded.config->upstreams[i].name == route.upstream) {
        rr.pool = rt->pools[i].get();
        rr.pool_index = i;
      }
    }
    rr.stats = registry.route(route.name.empty() ? route.path_prefix : route.name);
    rt->route_runtime.push_back(std::move(rr));
  }
  return rt;
}

}  // namespace sluice::testing
