// The sections about rate limiting: limits:, redis: and limiter:.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include "proxy/config/enum_names.h"
#include "proxy/config/names.h"
#include "proxy/config/sections.h"

namespace sluice::config {
namespace {

constexpr std::size_t kMaxApiKeyBytes = 256;  // SPEC §4: a longer key is a 400
constexpr std::int64_t kMaxPoolSize = 1024;

constexpr std::string_view kLimitKeys[] = {
    "per", "rate", "burst", "shadow", "exempt", "missing", "overrides", "store", "on_store_error"};
constexpr std::string_view kOverrideKeys[] = {"rate", "burst"};
constexpr std::string_view kRedisKeys[] = {"address", "timeout", "pool_size", "key_prefix"};
constexpr std::string_view kLimiterKeys[] = {"sweep_interval", "max_keys", "response_headers",
                                             "header_style"};

// limits.NAME.overrides: API key -> { rate, burst }. An override inherits what
// it leaves out: the limit's rate, and the burst that rate implies.
void loadOverrides(Reader& reader, const Entry& entry, LimitConfig& l, bool have_rate) {
  MapView view = reader.openMap(entry, {});
  for (const auto& [key, e] : view.entries) {
    if (key.empty() || key.size() > kMaxApiKeyBytes) {
      reader.error(e.anchor, entry.path + ": an API key must be 1 to " +
                                 std::to_string(kMaxApiKeyBytes) + " bytes long");
      continue;
    }
    if (!e.value.IsMap()) {
      reader.error(
          e, "expected a map such as { rate: 1000/s, burst: 2000 }, got " + describe(e.value));
      continue;
    }
    MapView fields = reader.openMap(e, kOverrideKeys);
    if (fields.entries.empty()) {
      reader.error(e, "an override needs a rate, a burst or both");
      continue;
    }
    KeyOverride override_value;
    bool ok = have_rate;
    override_value.rate = l.rate;
    if (const Entry* r = fields.find("rate")) ok = reader.readRate(*r, override_value.rate);
    if (const Entry* b = fields.find("burst")) {
      ok = reader.readBurst(*b, override_value.burst) && ok;
    } else {
      override_value.burst = std::max(1.0, override_value.rate.count);
    }
    if (ok) l.overrides[key] = override_value;
  }
}

// One limits.NAME map; `store: redis` values are kept in `draft` for the check
// against the redis: block.
void loadLimit(Reader& reader, const Entry& entry, LimitConfig& l, Draft& draft) {
  MapView view = reader.openMap(entry, kLimitKeys);
  bool per_known = true;
  if (const Entry* e = view.find("per")) per_known = reader.readEnum(*e, l.per, kLimitScopeNames);
  bool have_rate = false;
  if (const Entry* e = reader.require(view, "rate")) have_rate = reader.readRate(*e, l.rate);
  if (const Entry* e = view.find("burst")) {
    reader.readBurst(*e, l.burst);
  } else if (have_rate) {
    l.burst = std::max(1.0, l.rate.count);
  }
  if (const Entry* e = view.find("shadow")) reader.readBool(*e, l.shadow);
  if (const Entry* e = view.find("exempt")) reader.readCidrs(*e, l.exempt);
  // missing: and overrides: are about API keys; on another scope they are a mistake.
  auto api_key_only = [&](const Entry& e, std::string_view key) {
    if (per_known && l.per != LimitScope::kApiKey) {
      reader.error(e.anchor, entry.path + "." + std::string(key) +
                                 ": only applies to limits with per: api_key");
    }
  };
  if (const Entry* e = view.find("missing")) {
    reader.readEnum(*e, l.missing, kMissingKeyNames);
    api_key_only(*e, "missing");
  }
  if (const Entry* e = view.find("overrides")) {
    api_key_only(*e, "overrides");
    loadOverrides(reader, *e, l, have_rate);
  }
  if (const Entry* e = view.find("store")) {
    if (reader.readEnum(*e, l.store, kStoreKindNames) && l.store == StoreKind::kRedis) {
      draft.redis_stores.push_back(*e);
    }
  }
  if (const Entry* e = view.find("on_store_error")) {
    reader.readEnum(*e, l.on_store_error, kStoreErrorPolicyNames);
  }
}

}  // namespace

void loadLimits(Reader& reader, const Entry& entry, Draft& draft) {
  MapView view = reader.openMap(entry, {});
  draft.limits_readable = view.valid;
  for (const auto& [name, e] : view.entries) {
    checkPlainName(reader, e, name, "limit");
    LimitConfig limit;
    limit.name = name;
    loadLimit(reader, e, limit, draft);
    draft.config.limits.push_back(std::move(limit));
  }
}

void loadRedis(Reader& reader, const Entry& entry, std::optional<RedisConfig>& out) {
  MapView view = reader.openMap(entry, kRedisKeys);
  if (!view.valid) return;
  RedisConfig r;
  if (const Entry* e = view.find("address")) {
    reader.readAddress(*e, r.address, Port::kZeroRejected);
  }
  if (const Entry* e = view.find("timeout")) reader.readDuration(*e, r.timeout);
  if (const Entry* e = view.find("pool_size")) reader.readInt(*e, r.pool_size, 1, kMaxPoolSize);
  if (const Entry* e = view.find("key_prefix")) {
    if (auto text = reader.readString(*e)) r.key_prefix = *text;
  }
  out = r;
}

void loadLimiter(Reader& reader, const Entry& entry, LimiterConfig& l) {
  MapView view = reader.openMap(entry, kLimiterKeys);
  if (const Entry* e = view.find("sweep_interval")) reader.readDuration(*e, l.sweep_interval);
  if (const Entry* e = view.find("max_keys")) {
    reader.readInt(*e, l.max_keys, 1, std::numeric_limits<std::int64_t>::max());
  }
  if (const Entry* e = view.find("response_headers")) reader.readBool(*e, l.response_headers);
  if (const Entry* e = view.find("header_style")) {
    reader.readEnum(*e, l.header_style, kHeaderStyleNames);
  }
}

}  // namespace sluice::config
