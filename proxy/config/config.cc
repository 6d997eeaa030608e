#include "proxy/config/config.h"

#include "proxy/config/enum_names.h"

namespace sluice::config {

const UpstreamConfig* Config::findUpstream(const std::string& name) const {
  for (const UpstreamConfig& upstream : upstreams) {
    if (upstream.name == name) return &upstream;
  }
  return nullptr;
}

const LimitConfig* Config::findLimit(const std::string& name) const {
  for (const LimitConfig& limit : limits) {
    if (limit.name == name) return &limit;
  }
  return nullptr;
}

std::string_view toString(LimitScope value) { return nameOf(kLimitScopeNames, value); }

std::string_view toString(MissingKey value) { return nameOf(kMissingKeyNames, value); }

std::string_view toString(StoreKind value) { return nameOf(kStoreKindNames, value); }

std::string_view toString(StoreErrorPolicy value) { return nameOf(kStoreErrorPolicyNames, value); }

std::string_view toString(HeaderStyle value) { return nameOf(kHeaderStyleNames, value); }
std::string_view toString(TlsVersion value) { return nameOf(kTlsVersionNames, value); }

}  // namespace sluice::config
