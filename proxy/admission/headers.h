#pragma once
// Rate-limit header rendering (SPEC §4): pure functions from a bucket's
// numbers to header lines ("Name: value\r\n"), appended to a string.

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "proxy/admission/admission.h"
#include "proxy/config/config.h"
#include "proxy/limiter/decide.h"

namespace sluice::admission {

// What a rate-limit header needs to know about one limit's bucket.
struct BucketView {
  std::string_view name;
  std::int64_t burst = 0;           // q
  std::int64_t window_seconds = 0;  // w
  std::int64_t remaining = 0;       // r
  limiter::Nanos wait = 0;          // until one token is back
  limiter::Nanos full_in = 0;       // until full
  limiter::Nanos interval = 0;      // T
};

BucketView viewOf(const limiter::Probe& p);

// Seconds until the next token is back for an allowed request (RateLimit t),
// at least 1; 0 when the bucket is full.
std::int64_t nextTokenSeconds(const BucketView& v);

// "Retry-After: N", N at least 1 (RFC 9110 §10.2.3).
void appendRetryAfter(std::string& h, std::int64_t seconds);

// RateLimit-Policy / RateLimit (draft-ietf-httpapi-ratelimit-headers-10) or
// X-RateLimit-*, for one limit; nothing for style none. `t` is seconds until
// a token is back (0: omitted, the bucket is full).
void appendLimitHeaders(std::string& h, const BucketView& v, config::HeaderStyle style,
                        std::int64_t t);

// A denied decision over `probes` as a 429: the violated limits, Retry-After
// and the headline limit's headers.
void renderDenial(std::span<const limiter::Probe> probes, const limiter::Decision& d,
                  config::HeaderStyle style, AdmissionResult* out);

}  // namespace sluice::admission
