#pragma once
// /limits?name=N (SPEC §8): the keys of one limit with the most denials, as
// JSON. IP keys print as their network, API keys as an 8-hex-digit
// fingerprint (never the key).

#include <cstddef>
#include <string>

#include "proxy/client/key_hash.h"
#include "proxy/config/config.h"
#include "proxy/limiter/limit.h"

namespace sluice::admission {

// Appends {"limit":..,"per":..,"keys":[{"key","tokens","allowed","denied"}..]}.
void appendTopKeysJson(const limiter::Limit& limit, std::size_t top, limiter::Nanos now,
                       const config::ClientsConfig& clients, std::string* json);

// The display form of a bucket key of a limit of scope `scope`. An api_key
// limit also holds IP buckets (missing: ip): those invert to a masked
// address, which a hashed API key practically never does.
std::string keyText(config::LimitScope scope, const client::KeyHash& key, int ipv4_prefix,
                    int ipv6_prefix);

}  // namespace sluice::admission
