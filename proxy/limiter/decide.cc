#include "proxy/limiter/decide.h"

#include <cassert>

namespace sluice::limiter {

Decision decide(std::span<Probe> probes, Nanos now) {
  Decision decision;
  bool denied = false;
  for (Probe& probe : probes) {
    assert(probe.limit != nullptr);
    probe.consumed = false;
    probe.remaining = 0;
    probe.wait = 0;
    probe.full_in = 0;
    probe.burst = 0;
    probe.window_seconds = 0;
    probe.interval = 0;
    if (probe.exempt) {
      probe.outcome = Outcome::kExempt;
      probe.limit->count(Outcome::kExempt);
      continue;
    }
    const Limit::Take take = probe.limit->take(probe.key, now);
    probe.consumed = take.admitted;
    probe.interval = take.interval;
    probe.remaining = take.after.remaining;
    probe.wait = take.after.wait;
    probe.full_in = take.after.full_in;
    probe.burst = take.after.params.burst;
    probe.window_seconds = take.after.params.window_seconds;
    if (take.admitted) {
      probe.outcome = Outcome::kAllowed;
    } else if (probe.limit->shadow()) {
      probe.outcome = Outcome::kShadowDenied;
    } else {
      probe.outcome = Outcome::kDenied;
      denied = true;
    }
    probe.limit->count(probe.outcome);
  }

  if (denied) {
    decision.allowed = false;
    Nanos longest = -1;
    for (std::size_t i = 0; i < probes.size(); ++i) {
      Probe& probe = probes[i];
      if (probe.consumed) {
        // Give the token back and report the bucket as the request found it:
        // one more token, available now.
        probe.limit->giveBack(probe.key, probe.interval);
        probe.consumed = false;
        probe.remaining += 1;
        probe.wait = 0;
        probe.full_in = std::max<Nanos>(0, probe.full_in - probe.interval);
      }
      if (probe.outcome == Outcome::kDenied && probe.wait > longest) {
        longest = probe.wait;
        decision.headline = static_cast<int>(i);
      }
    }
    // Every other limit admitted the request at `now` and only gains tokens
    // with time, so after `longest` all of them admit it.
    decision.retry_after_seconds = std::max<std::int64_t>(1, ceilSeconds(longest));
    return decision;
  }

  std::int64_t fewest = 0;
  for (std::size_t i = 0; i < probes.size(); ++i) {
    const Probe& probe = probes[i];
    if (probe.outcome != Outcome::kAllowed || probe.limit->shadow()) continue;
    if (decision.headline < 0 || probe.remaining < fewest) {
      fewest = probe.remaining;
      decision.headline = static_cast<int>(i);
    }
  }
  return decision;
}

void refund(std::span<Probe> probes) {
  for (Probe& probe : probes) {
    if (!probe.consumed) continue;
    probe.limit->giveBack(probe.key, probe.interval);
    probe.consumed = false;
  }
}

}  // namespace sluice::limiter
