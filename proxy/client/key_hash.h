#pragma once
// Bucket keys: a 128-bit hash of the client identity. API keys are hashed
// (the key itself is never stored); IP keys are an invertible scramble of the
// masked address, so an admin view can show the network behind a bucket.

#include <array>
#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

namespace sluice::client {

using IpAddr = std::array<std::uint8_t, 16>;

struct KeyHash {
  std::uint64_t hi = 0;
  std::uint64_t lo = 0;
  friend bool operator==(const KeyHash&, const KeyHash&) = default;
  friend auto operator<=>(const KeyHash&, const KeyHash&) = default;
};

// 128-bit non-cryptographic hash of `bytes`; deterministic across runs for a given seed.
KeyHash hashBytes(std::string_view bytes, std::uint64_t seed);

// The bucket key of an API key (scope-tagged: never equals the key of an IP).
KeyHash hashApiKey(std::string_view api_key);

// The bucket key of a masked client address (see ipKey); invertible with ipFromKey.
KeyHash hashIpKey(const IpAddr& masked);

// The address hashIpKey was given; meaningful only for keys built by hashIpKey.
IpAddr ipFromKey(const KeyHash& key);

// 8 lowercase hex digits naming a key in logs and /limits; stable across runs.
std::string fingerprint(const KeyHash& key);

// fingerprint(hashApiKey(api_key)).
std::string fingerprint(std::string_view api_key);

}  // namespace sluice::client
