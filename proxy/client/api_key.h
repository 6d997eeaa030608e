#pragma once
// The API key of a request (SPEC §3 step 3): the configured header, else the
// configured query parameter.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace sluice::client {

// Longest API key accepted; a longer one is answered 400 (SPEC §4).
inline constexpr std::size_t kMaxApiKeyBytes = 256;

enum class ApiKeyStatus { kMissing, kFound, kTooLong };

struct ApiKey {
  ApiKeyStatus status = ApiKeyStatus::kMissing;
  std::string value;  // set when kFound
};

// The first value of parameter `name` in a raw query string ("a=1&b=2", no
// '?'), percent-decoded with '+' as space (application/x-www-form-urlencoded,
// as URLSearchParams reads it); a malformed %-escape is kept literally. A
// parameter without '=' has the empty value.
std::optional<std::string> queryParam(std::string_view query, std::string_view name);

// The API key: the header value (surrounding spaces trimmed) when present and
// non-empty, else query parameter `param` (when `param` is non-empty and the
// value is non-empty). Over kMaxApiKeyBytes (after decoding) is kTooLong.
ApiKey apiKey(std::optional<std::string_view> header_value, std::string_view query,
              std::string_view param);

}  // namespace sluice::client
