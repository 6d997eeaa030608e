#pragma once
// Token bucket arithmetic in GCRA form (SPEC §3 "Token bucket semantics").
//
// A bucket is one number, its TAT ("theoretical arrival time"): the instant at
// which it will be full again. TAT <= now means full. With emission interval
// T (ns per token) and tolerance tau = burst * T, a request at `now` is
// admitted iff max(TAT, now) + T - now <= tau, and then TAT becomes
// max(TAT, now) + T. Tokens left are (tau - backlog) / T with
// backlog = max(TAT - now, 0). Everything here is pure: time is passed in.
//
// Exactness: T is rounded up and tau = floor(burst * T), so over any interval
// D at most floor((tau + D) / T) <= burst + rate * D requests are admitted.
// All arithmetic saturates instead of overflowing, for any int64 inputs.

#include <algorithm>
#include <cstdint>
#include <limits>

#include "proxy/config/values.h"

namespace sluice::limiter {

using Nanos = std::int64_t;

inline constexpr Nanos kNanosPerSecond = 1000000000;
// Largest tolerance (burst x interval) represented, about 4.5 years; a config
// beyond it (e.g. burst 100000 at 1/h) is clamped.
inline constexpr Nanos kMaxTolerance = Nanos{1} << 57;

struct BucketParams {
  Nanos interval = kNanosPerSecond;   // T: ns per token, >= 1
  Nanos tolerance = kNanosPerSecond;  // tau = burst * T, >= T
  friend bool operator==(const BucketParams&, const BucketParams&) = default;
};

// Params for `tokens_per_second` (> 0) and `burst` (below 1 counts as 1).
BucketParams bucketParams(double tokens_per_second, double burst);

// Params for a config rate ("N/s", "N/m", "N/h") and burst; T is computed from
// count and period directly so 100/m gives exactly 0.6 s.
BucketParams bucketParams(const config::Rate& rate, double burst);

// x + y, clamped to the int64 range.
constexpr Nanos saturatingAdd(Nanos x, Nanos y) {
  Nanos sum = 0;
  if (__builtin_add_overflow(x, y, &sum)) {
    return y > 0 ? std::numeric_limits<Nanos>::max() : std::numeric_limits<Nanos>::min();
  }
  return sum;
}

// How far `tat` lies ahead of `now`: 0 for a full bucket; never overflows.
constexpr Nanos backlog(Nanos tat, Nanos now) {
  if (tat <= now) return 0;
  const auto diff = static_cast<std::uint64_t>(tat) - static_cast<std::uint64_t>(now);
  return diff > static_cast<std::uint64_t>(std::numeric_limits<Nanos>::max())
             ? std::numeric_limits<Nanos>::max()
             : static_cast<Nanos>(diff);
}

// True when the bucket holds `burst` tokens at `now` (safe to forget it).
constexpr bool isFull(Nanos tat, Nanos now) { return tat <= now; }

// True when one token can be taken at `now`.
constexpr bool admits(Nanos tat, Nanos now, const BucketParams& p) {
  return backlog(tat, now) <= p.tolerance - p.interval;
}

// The TAT after taking one token at `now` (call only when admits()).
constexpr Nanos afterTake(Nanos tat, Nanos now, const BucketParams& p) {
  return saturatingAdd(std::max(tat, now), p.interval);
}

// Whole tokens in the bucket at `now` (floor; 0 when a reload left it over-drawn).
constexpr std::int64_t tokensLeft(Nanos tat, Nanos now, const BucketParams& p) {
  const Nanos b = backlog(tat, now);
  return b >= p.tolerance ? 0 : (p.tolerance - b) / p.interval;
}

// Time from `now` until one token can be taken: 0 when one can be taken now.
constexpr Nanos waitForToken(Nanos tat, Nanos now, const BucketParams& p) {
  const Nanos b = backlog(tat, now);
  const Nanos allowed = p.tolerance - p.interval;
  return b <= allowed ? 0 : b - allowed;
}

// Time from `now` until the bucket is full again.
constexpr Nanos timeToFull(Nanos tat, Nanos now) { return backlog(tat, now); }

// Whole tokens a full bucket holds (RateLimit-Policy q).
constexpr std::int64_t capacity(const BucketParams& p) { return p.tolerance / p.interval; }

// ns rounded up to whole seconds (Retry-After is never early, RFC 9110 §10.2.3).
constexpr std::int64_t ceilSeconds(Nanos ns) {
  return ns <= 0 ? 0 : (ns - 1) / kNanosPerSecond + 1;
}

// Seconds an empty bucket takes to fill, rounded up, at least 1 (RateLimit-Policy w).
// Rounding T up adds under 1 ns per token to tau; that is discounted so 3/s
// with burst 3 advertises w=1, not 2.
constexpr std::int64_t windowSeconds(const BucketParams& p) {
  return std::max<std::int64_t>(1, ceilSeconds(p.tolerance - capacity(p)));
}

// Re-expresses a bucket under new params at `now` with its tokens kept (as a
// real number, even a negative balance when `now` lags the bucket's last
// decisions) and clamped to the new burst; never adds tokens. With the rate
// unchanged this is a pure shift of the TAT by the change in tau, whatever
// `now`. A full bucket stays full (it could have been swept and recreated
// full anyway).
Nanos convertTat(Nanos tat, Nanos now, const BucketParams& from, const BucketParams& to);

}  // namespace sluice::limiter
