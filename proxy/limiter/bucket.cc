#include "proxy/limiter/bucket.h"

#include <cmath>

namespace sluice::limiter {
namespace {

__extension__ using Int128 = __int128;

BucketParams fromInterval(long double interval_ns, double burst) {
  // Rounding T up never admits above the configured rate.
  long double t = std::ceil(interval_ns);
  if (!(t >= 1)) t = 1;  // also catches NaN
  if (t > static_cast<long double>(kMaxTolerance)) t = static_cast<long double>(kMaxTolerance);
  const auto interval = static_cast<Nanos>(t);
  const long double b = burst >= 1 ? static_cast<long double>(burst) : 1.0L;
  long double tau = std::floor(b * static_cast<long double>(interval));
  if (!(tau <= static_cast<long double>(kMaxTolerance))) {
    tau = static_cast<long double>(kMaxTolerance);
  }
  const auto tolerance = std::max(interval, static_cast<Nanos>(tau));
  return {interval, tolerance};
}

}  // namespace

BucketParams bucketParams(double tokens_per_second, double burst) {
  if (!(tokens_per_second > 0)) return fromInterval(static_cast<long double>(kMaxTolerance), burst);
  return fromInterval(1e9L / static_cast<long double>(tokens_per_second), burst);
}

BucketParams bucketParams(const config::Rate& rate, double burst) {
  if (!(rate.count > 0) || !(rate.period_seconds > 0)) {
    return fromInterval(static_cast<long double>(kMaxTolerance), burst);
  }
  return fromInterval(
      1e9L * static_cast<long double>(rate.period_seconds) / static_cast<long double>(rate.count),
      burst);
}

Nanos convertTat(Nanos tat, Nanos now, const BucketParams& from, const BucketParams& to) {
  const Nanos b = backlog(tat, now);
  if (b == 0) return tat;
  // tokens (real) = (tau_from - b) / T_from, negative when `now` is earlier
  // than the bucket's last decisions (the balance is kept, not reset to 0:
  // that would refill). The same tokens under `to` leave a backlog of
  // tau_to - tokens * T_to; tokens are rounded down, so never a token more.
  const Int128 scaled = static_cast<Int128>(from.tolerance - b) * static_cast<Int128>(to.interval);
  Int128 kept = scaled / from.interval;
  if (scaled % from.interval != 0 && scaled < 0) kept -= 1;
  if (kept >= to.tolerance) return now;  // at least the new burst: full
  const Int128 new_backlog = static_cast<Int128>(to.tolerance) - kept;
  const Int128 max = std::numeric_limits<Nanos>::max();
  return saturatingAdd(now, static_cast<Nanos>(new_backlog > max ? max : new_backlog));
}

}  // namespace sluice::limiter
