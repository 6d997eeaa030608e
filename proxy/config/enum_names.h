#pragma once
// One table per config enum: its config-file spelling and its value. The loader
// parses with these tables and toString() prints with them, so a spelling is
// written once and the two directions cannot drift apart.

#include <cstddef>
#include <string_view>

#include "proxy/config/config.h"

namespace sluice::config {

template <typename T>
struct EnumName {
  std::string_view name;
  T value;
};

// Table order is the order "expected one of ..." lists the choices in.
inline constexpr EnumName<LimitScope> kLimitScopeNames[] = {
    {"global", LimitScope::kGlobal}, {"ip", LimitScope::kIp}, {"api_key", LimitScope::kApiKey}};
inline constexpr EnumName<MissingKey> kMissingKeyNames[] = {
    {"ip", MissingKey::kIp}, {"skip", MissingKey::kSkip}, {"reject", MissingKey::kReject}};
inline constexpr EnumName<StoreKind> kStoreKindNames[] = {{"local", StoreKind::kLocal},
                                                          {"redis", StoreKind::kRedis}};
inline constexpr EnumName<StoreErrorPolicy> kStoreErrorPolicyNames[] = {
    {"local", StoreErrorPolicy::kLocal},
    {"allow", StoreErrorPolicy::kAllow},
    {"deny", StoreErrorPolicy::kDeny}};
inline constexpr EnumName<HeaderStyle> kHeaderStyleNames[] = {
    {"ietf", HeaderStyle::kIetf},
    {"x-ratelimit", HeaderStyle::kXRateLimit},
    {"none", HeaderStyle::kNone}};
inline constexpr EnumName<TlsVersion> kTlsVersionNames[] = {{"1.2", TlsVersion::k12},
                                                            {"1.3", TlsVersion::k13}};

// The spelling of `value` in `table`; "?" for a value the table lacks (one
// cast from an out-of-range integer).
template <typename T, std::size_t N>
constexpr std::string_view nameOf(const EnumName<T> (&table)[N], T value) {
  for (const EnumName<T>& entry : table) {
    if (entry.value == value) return entry.name;
  }
  return "?";
}

}  // namespace sluice::config
