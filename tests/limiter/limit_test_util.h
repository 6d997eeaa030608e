#pragma once
// Helpers shared by the limiter tests: configs and keys built in one line.

#include <memory>
#include <string>

#include "proxy/client/key_hash.h"
#include "proxy/config/config.h"
#include "proxy/limiter/decide.h"
#include "proxy/limiter/limit.h"

namespace sluice::limiter::test_util {

inline constexpr Nanos kSec = kNanosPerSecond;
inline constexpr Nanos kT0 = 5000 * kSec;  // arbitrary fake start time

inline config::LimitConfig limitConfig(std::string name, config::LimitScope per, double rate,
                                       double burst, bool shadow = false) {
  config::LimitConfig c;
  c.name = std::move(name);
  c.per = per;
  c.rate = {rate, 1};
  c.burst = burst;
  c.shadow = shadow;
  return c;
}

inline std::shared_ptr<Limit> globalLimit(double rate, double burst, bool shadow = false) {
  return Limit::create(limitConfig("global", config::LimitScope::kGlobal, rate, burst, shadow),
                       1000);
}

inline std::shared_ptr<Limit> ipLimit(double rate, double burst, std::int64_t max_keys = 1000,
                                      bool shadow = false) {
  return Limit::create(limitConfig("per_ip", config::LimitScope::kIp, rate, burst, shadow),
                       max_keys);
}

inline client::KeyHash ipKey(int n) {
  client::IpAddr ip{};
  ip[10] = 0xff;
  ip[11] = 0xff;
  ip[12] = 10;
  ip[13] = static_cast<std::uint8_t>(n >> 16);
  ip[14] = static_cast<std::uint8_t>(n >> 8);
  ip[15] = static_cast<std::uint8_t>(n);
  return client::hashIpKey(ip);
}

// Decides a request that meets one limit.
inline Decision decideOne(Limit& limit, const client::KeyHash& key, Nanos now,
                          Probe* out = nullptr) {
  Probe probe{&limit, key};
  Decision d = decide({&probe, 1}, now);
  if (out != nullptr) *out = probe;
  return d;
}

}  // namespace sluice::limiter::test_util
