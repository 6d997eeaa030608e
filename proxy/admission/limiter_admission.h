#pragma once
// The concrete admission: client identity (proxy/client) + token buckets
// (proxy/limiter), local or in a shared store, compiled per config.

#include <memory>

#include "proxy/admission/admission.h"
#include "proxy/config/config.h"
#include "proxy/event/clock.h"
#include "proxy/metrics/metrics.h"
#include "proxy/store/redis_store.h"

namespace sluice::admission {

// Builds the admission for `cfg`; buckets of limits whose name and `per` are
// unchanged are adopted from `previous` (the admission being replaced; may
// be null). Limits with `store: redis` are decided by `store` (null: no
// redis block).
std::shared_ptr<AdmissionContext> makeAdmission(const config::Config& cfg,
                                                const AdmissionContext* previous,
                                                std::shared_ptr<store::RedisStore> store,
                                                metrics::StatusStats* store_stats, int workers,
                                                event::Nanos now);

// The limits of one route, as indexes into cfg.limits.
RouteLimits compileRouteLimits(const config::Config& cfg, const config::RouteConfig& route);

}  // namespace sluice::admission
