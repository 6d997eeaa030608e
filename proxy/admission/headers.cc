#include "proxy/admission/headers.h"

#include <algorithm>

#include "proxy/http/response_writer.h"
#include "proxy/limiter/bucket.h"

namespace sluice::admission {

BucketView viewOf(const limiter::Probe& p) {
  return {p.limit->name(), p.burst, p.window_seconds, p.remaining, p.wait, p.full_in, p.interval};
}

std::int64_t nextTokenSeconds(const BucketView& v) {
  const std::int64_t missing = v.burst - v.remaining;
  if (missing <= 0) return 0;
  limiter::Nanos next = v.full_in - (missing - 1) * v.interval;
  if (next < 0) next = 0;
  return std::max<std::int64_t>(1, limiter::ceilSeconds(next));
}

void appendRetryAfter(std::string& h, std::int64_t seconds) {
  h.append("Retry-After: ");
  http::appendNumber(h, static_cast<unsigned long long>(std::max<std::int64_t>(1, seconds)));
  h.append("\r\n");
}

void appendLimitHeaders(std::string& h, const BucketView& v, config::HeaderStyle style,
                        std::int64_t t) {
  const auto num = [&h](std::int64_t n) {
    http::appendNumber(h, static_cast<unsigned long long>(std::max<std::int64_t>(0, n)));
  };
  if (style == config::HeaderStyle::kIetf) {
    h.append("RateLimit-Policy: \"");
    h.append(v.name);
    h.append("\";q=");
    num(v.burst);
    h.append(";w=");
    num(v.window_seconds);
    h.append("\r\nRateLimit: \"");
    h.append(v.name);
    h.append("\";r=");
    num(v.remaining);
    if (t > 0) {
      h.append(";t=");
      num(t);
    }
    h.append("\r\n");
  } else if (style == config::HeaderStyle::kXRateLimit) {
    h.append("X-RateLimit-Limit: ");
    num(v.burst);
    h.append("\r\nX-RateLimit-Remaining: ");
    num(v.remaining);
    h.append("\r\nX-RateLimit-Reset: ");
    num(limiter::ceilSeconds(v.full_in));
    h.append("\r\n");
  }
}

void renderDenial(std::span<const limiter::Probe> probes, const limiter::Decision& d,
                  config::HeaderStyle style, AdmissionResult* out) {
  out->status = 429;
  for (const limiter::Probe& p : probes) {
    if (p.outcome == limiter::Outcome::kDenied) out->violated.push_back(p.limit->name());
  }
  appendRetryAfter(out->headers, d.retry_after_seconds);
  if (d.headline >= 0) {
    appendLimitHeaders(out->headers, viewOf(probes[static_cast<std::size_t>(d.headline)]), style,
                       d.retry_after_seconds);
  }
}

}  // namespace sluice::admission
