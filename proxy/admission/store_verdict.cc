#include "proxy/admission/store_verdict.h"

#include <algorithm>

#include "proxy/limiter/bucket.h"

namespace sluice::admission {

RemoteOutcome fallbackOutcome(config::StoreErrorPolicy policy) {
  switch (policy) {
    case config::StoreErrorPolicy::kAllow:
      return RemoteOutcome::kAllowed;
    case config::StoreErrorPolicy::kDeny:
      return RemoteOutcome::kDenied;
    case config::StoreErrorPolicy::kLocal:
      break;
  }
  return RemoteOutcome::kDecideLocally;
}

RemoteVerdict readStoreReply(std::span<const limiter::Probe> remote, const store::Reply& reply) {
  RemoteVerdict v;
  v.outcomes.reserve(remote.size());
  if (reply.result != store::Result::kOk || reply.keys.size() != remote.size()) {
    v.store_failed = true;
    for (const limiter::Probe& probe : remote) {
      v.outcomes.push_back(fallbackOutcome(probe.limit->config().on_store_error));
    }
    return v;
  }
  v.views.reserve(remote.size());
  for (std::size_t i = 0; i < remote.size(); ++i) {
    const store::KeyReply& k = reply.keys[i];
    const limiter::Probe& probe = remote[i];
    const BucketView view{probe.limit->name(), probe.burst,      probe.window_seconds,
                          k.remaining,         k.wait_us * 1000, k.full_in_us * 1000,
                          probe.interval};
    v.views.push_back(view);
    const bool denied = !reply.allowed && !k.admitted;
    v.outcomes.push_back(denied ? RemoteOutcome::kDenied : RemoteOutcome::kAllowed);
    if (!denied) continue;
    const std::int64_t secs = std::max<std::int64_t>(1, limiter::ceilSeconds(view.wait));
    if (v.headline < 0 || secs > v.retry_after) {
      v.retry_after = secs;
      v.headline = static_cast<int>(i);
    }
  }
  return v;
}

}  // namespace sluice::admission
