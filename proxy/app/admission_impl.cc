#include "proxy/app/admission_impl.h"

namespace sluice::app {

std::shared_ptr<server::AdmissionContext> makeAdmission(const config::Config&,
                                                        const server::Runtime*) {
  return nullptr;
}

server::RouteLimits compileRouteLimits(const config::Config& cfg,
                                       const config::RouteConfig& route) {
  server::RouteLimits out;
  for (const auto& name : route.limits) {
    for (std::size_t i = 0; i < cfg.limits.size(); ++i) {
      if (cfg.limits[i].name == name) out.limit_indexes.push_back(i);
    }
  }
  return out;
}

}  // namespace sluice::app
