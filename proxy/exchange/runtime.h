#pragma once
// The immutable runtime snapshot (STYLE "immutable runtime snapshot"): the
// validated config compiled into route table, pools and limits. Each request
// holds the snapshot it started with; reload swaps in a new one.

#include <memory>
#include <vector>

#include "proxy/config/config.h"
#include "proxy/event/access_log.h"
#include "proxy/metrics/metrics.h"
#include "proxy/routing/route_table.h"
#include "proxy/tls/context.h"
#include "proxy/admission/admission.h"
#include "proxy/upstream/shared_pool.h"

namespace sluice::exchange {

struct RouteRuntime {
  upstream::SharedPool* pool = nullptr;
  std::size_t pool_index = 0;
  admission::RouteLimits limits;
  metrics::StatusStats* stats = nullptr;
  metrics::TunnelStats* tunnels = nullptr;  // SPEC §10
};

struct Runtime {
  std::shared_ptr<const config::Config> config;
  routing::RouteTable routes;
  std::vector<std::shared_ptr<upstream::SharedPool>> pools;  // config.upstreams order
  std::vector<RouteRuntime> route_runtime;                   // parallel to routes
  std::vector<metrics::StatusStats*> pool_stats;             // parallel to pools
  metrics::StatusStats* unmatched_stats = nullptr;           // requests before/without a route
  std::shared_ptr<admission::AdmissionContext> admission;
  std::shared_ptr<event::AccessLog> access_log;  // null when off
  std::shared_ptr<const tls::ServerTls> tls;      // set with server.tls_listen

  explicit Runtime(std::shared_ptr<const config::Config> cfg)
      : config(cfg),
        routes(cfg->routes, cfg->server.normalize_path ? routing::PrefixForm::kNormalized
                                                       : routing::PrefixForm::kAsWritten) {}
};

}  // namespace sluice::exchange
