#pragma once
// Shared by the admission tests: a config from YAML and a request view.

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <string_view>

#include "proxy/admission/admission.h"
#include "proxy/config/config.h"
#include "proxy/config/loader.h"

namespace sluice::admission::test_util {

// `limits_yaml` is the body of the `limits:` block (indented two spaces);
// one route / lists every limit named in `route_limits`.
inline std::shared_ptr<const config::Config> loadLimits(std::string_view limits_yaml,
                                                        std::string_view route_limits,
                                                        std::string_view extra = "") {
  std::string yaml =
      "upstreams:\n"
      "  api: {targets: [127.0.0.1:9]}\n"
      "limits:\n";
  yaml += limits_yaml;
  yaml += "routes:\n  - {path_prefix: /, upstream: api, limits: [";
  yaml += route_limits;
  yaml += "]}\n";
  yaml += extra;
  config::LoadResult loaded = config::loadConfigString(yaml, "admission_test.yaml");
  if (!loaded.ok()) {
    ADD_FAILURE() << yaml << "\n" << loaded.errors.front().toString();
    return nullptr;
  }
  return loaded.config;
}

// A request from `peer` (dotted IPv4 or IPv6 text).
inline RequestView viewFrom(std::string_view peer) {
  RequestView v;
  v.peer = *config::parseIp(peer);
  return v;
}

inline RequestView withKey(RequestView v, std::string_view key) {
  v.api_key_header = key;
  v.has_api_key_header = true;
  return v;
}

}  // namespace sluice::admission::test_util
