#pragma once
// The admission decision over every limit of a route (SPEC §3 step 4, §4).
//
//   std::array<Probe, 3> probes{
//       Probe(global),                                  // per: global
//       Probe(per_ip, client::hashIpKey(ip_key)),      // per: ip
//       Probe(per_key, client::hashApiKey(key), per_key->exempts(client_ip))};
//   Decision d = decide(probes, clock.now());
//   if (!d.allowed) answer 429 with Retry-After: d.retry_after_seconds, the
//   RateLimit headers from probes[d.headline], and violated-policies: every
//   probe whose outcome is kDenied. Allowed with response_headers: the
//   headers of probes[d.headline] (when >= 0).
//
// A request is admitted only if every non-shadow, non-exempt limit admits it,
// and a denied request consumes no token anywhere: tokens are taken probe by
// probe and given back when a later limit denies. Every limit is evaluated
// even after a denial, so Retry-After covers all denying limits.
//
// Shadow limits never deny. Their outcome is kShadowDenied when they would
// have denied (no token taken), else kAllowed; like any limit they consume a
// token only when the request is admitted, so they measure exactly what the
// limit would do if it were enforced alongside the others.
//
// Exempt probes (client in the limit's exempt CIDRs; see Limit::exempts) are
// not evaluated and counted as kExempt.

#include <cstdint>
#include <span>

#include "proxy/client/key_hash.h"
#include "proxy/limiter/bucket.h"
#include "proxy/limiter/limit.h"

namespace sluice::limiter {

struct Probe {
  Probe() = default;
  // A probe of `for_limit` for `for_key` (ignored by per: global limits);
  // `is_exempt` when the client is in the limit's exempt CIDRs.
  explicit Probe(Limit* for_limit, const client::KeyHash& for_key = {}, bool is_exempt = false)
      : limit(for_limit), key(for_key), exempt(is_exempt) {}

  // In.
  Limit* limit = nullptr;
  client::KeyHash key;  // ignored for per: global
  bool exempt = false;
  // Out (undefined before decide(); zero for exempt probes).
  Outcome outcome = Outcome::kAllowed;
  bool consumed = false;            // a token of this limit went to this request
  std::int64_t remaining = 0;       // whole tokens left after the decision (RateLimit r)
  Nanos wait = 0;                   // until one token is back; 0 when remaining >= 1
  Nanos full_in = 0;                // until the bucket is full (X-RateLimit-Reset)
  std::int64_t burst = 0;           // RateLimit-Policy q
  std::int64_t window_seconds = 0;  // RateLimit-Policy w
  Nanos interval = 0;               // T used (internal: the roll-back amount)
};

struct Decision {
  bool allowed = true;
  // Denied: seconds until every denying limit admits the request, rounded up,
  // >= 1 (RFC 9110 §10.2.3); waiting exactly this long is never too early.
  std::int64_t retry_after_seconds = 0;
  // Denied: the denying probe with the longest wait (RateLimit headers).
  // Allowed: the enforcing probe with the fewest whole tokens left (the
  // "tightest"; first on ties). -1 when there is none.
  int headline = -1;
};

// Decides one request against `probes` at `now`, fills each probe's outputs
// and counts one outcome per probe. Thread-safe; never blocks on I/O.
Decision decide(std::span<Probe> probes, Nanos now);

// Gives back the tokens an admitted decide() took, for a request that a
// later check (a limit decided elsewhere, e.g. in Redis) denied: the request
// then consumed nothing (SPEC §3).
void refund(std::span<Probe> probes);

}  // namespace sluice::limiter
