#pragma once
// Responses sluice makes itself (SPEC §4): RFC 9457 problem documents.

#include <span>
#include <string>
#include <string_view>

namespace sluice::http {

// Reason phrase for a status code ("Too Many Requests"), "Unknown" if none.
std::string_view reasonPhrase(int status);

struct LocalResponse {
  int status = 500;
  bool close = false;                   // adds Connection: close
  bool head_only = false;               // HEAD request: headers, no body
  std::string_view extra_headers;       // complete "Name: value\r\n" lines
  std::string_view request_id;          // X-Request-Id value (omitted when empty)
  std::span<const std::string_view> violated_policies;  // 429 only
};

// Appends a complete HTTP/1.1 response with a one-line problem+json body to
// `out` (which is reused across requests to avoid allocation).
void appendProblemResponse(std::string& out, const LocalResponse& r);

// Appends a decimal unsigned number.
void appendNumber(std::string& out, unsigned long long n);

}  // namespace sluice::http
