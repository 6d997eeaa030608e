#include "proxy/config/config.h"

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

std::string_view toString(LimitScope value) {
  switch (value) {
    case LimitScope::kGlobal:
      return "global";
    case LimitScope::kIp:
      return "ip";
    case LimitScope::kApiKey:
      return "api_key";
  }
  return "?";
}

std::string_view toString(MissingKey value) {
  switch (value) {
    case MissingKey::kIp:
      return "ip";
    case MissingKey::kSkip:
      return "skip";
    case MissingKey::kReject:
      return "reject";
  }
  return "?";
}

std::string_view toString(StoreKind value) {
  switch (value) {
    case StoreKind::kLocal:
      return "local";
    case StoreKind::kRedis:
      return "redis";
  }
  return "?";
}

std::string_view toString(StoreErrorPolicy value) {
  switch (value) {
    case StoreErrorPolicy::kLocal:
      return "local";
    case StoreErrorPolicy::kAllow:
      return "allow";
    case StoreErrorPolicy::kDeny:
      return "deny";
  }
  return "?";
}

std::string_view toString(HeaderStyle value) {
  switch (value) {
    case HeaderStyle::kIetf:
      return "ietf";
    case HeaderStyle::kXRateLimit:
      return "x-ratelimit";
    case HeaderStyle::kNone:
      return "none";
  }
  return "?";
}

}  // namespace sluice::config
