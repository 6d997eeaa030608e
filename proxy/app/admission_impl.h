#pragma once
// The concrete admission: client identity (proxy/client) + token buckets
// (proxy/limiter), compiled per config.

#include <memory>

#include "proxy/config/config.h"
#include "proxy/event/clock.h"
#include "proxy/server/admission.h"
#include "proxy/exchange/runtime.h"
#include "proxy/store/redis_store.h"

namespace sluice::app {

// Builds the admission for `cfg`; buckets of limits whose name and `per` are
// unchanged are adopted from `previous` (may be null).
// Limits with `store: redis` are decided by `store` (null: no redis block).
std::shared_ptr<server::AdmissionContext> makeAdmission(
    const config::Config& cfg, const exchange::Runtime* previous,
    std::shared_ptr<store::RedisStore> store, metrics::StatusStats* store_stats, int workers,
    event::Nanos now);

// The limits of one route, as indexes into cfg.limits.
server::RouteLimits compileRouteLimits(const config::Config& cfg,
                                       const config::RouteConfig& route);

}  // namespace sluice::app
