#pragma once
// One configured limit (SPEC §2 `limits:`), shared by every worker and every
// route that names it: its params, its buckets and its counters.
//
// Buckets live in a BucketStore shared through a shared_ptr, so a reload can
// build a new Limit that adopts the old buckets (same name and `per`):
// Limit::reload() re-expresses every bucket under the new rate and burst with
// its tokens kept and clamped to the new burst (a reload never refills), and
// points the old Limit at the new one, so requests still holding the old
// snapshot use the new params too. Buckets carry a 2-bit generation tag; a
// bucket written by a decision that raced with the reload (previous tag) is
// converted the first time the new Limit touches it.

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "proxy/client/key_hash.h"
#include "proxy/config/config.h"
#include "proxy/limiter/bucket.h"
#include "proxy/limiter/key_table.h"
#include "proxy/limiter/striped_counters.h"

namespace sluice::limiter {

struct Probe;
struct Decision;
// See decide.h.
Decision decide(std::span<Probe> probes, Nanos now);
void refund(std::span<Probe> probes);

// What one limit decided for one request (metric label `decision`).
enum class Outcome : std::uint8_t { kAllowed, kDenied, kShadowDenied, kExempt };
inline constexpr std::size_t kOutcomeCount = 4;

// "allowed", "denied", "shadow_denied", "exempt" (SPEC §8).
std::string_view outcomeName(Outcome outcome);

// Bucket params of one key plus the header values derived from them.
struct KeyParams {
  BucketParams bucket;
  std::int64_t burst = 1;           // whole tokens when full (RateLimit-Policy q)
  std::int64_t window_seconds = 1;  // seconds to refill from empty (RateLimit-Policy w)
};

// The bucket of one key as seen at some instant.
struct KeyState {
  std::int64_t remaining = 0;  // whole tokens
  Nanos wait = 0;              // until one token can be taken (0: now)
  Nanos full_in = 0;           // until the bucket is full
  KeyParams params;
};

// One tracked key, for the /limits top-N view.
struct KeyStats {
  client::KeyHash key;
  std::int64_t remaining = 0;
  std::uint64_t allowed = 0;
  std::uint64_t denied = 0;
};

struct LimitStats {
  std::array<std::uint64_t, kOutcomeCount> decisions{};  // indexed by Outcome
  std::uint64_t keys = 0;                                // buckets held now (1 for a global limit)
  std::uint64_t swept = 0;                               // removed by sweep()
  std::uint64_t evicted = 0;                             // evicted at max_keys
  std::uint64_t memory_bytes = 0;  // bucket table allocation (entries + index)
};

class Limit {
  struct Private {};

 public:
  // A limit with fresh (full) buckets; keyed limits hold at most `max_keys` keys.
  static std::shared_ptr<Limit> create(const config::LimitConfig& config, std::int64_t max_keys);

  // A limit for a reloaded config: adopts `previous`'s buckets when the name
  // and `per` match (tokens clamped to the new burst at `now`, never
  // refilled), else fresh buckets. `previous` may be null. Calls must be
  // serialized (one control thread); decisions may run concurrently.
  static std::shared_ptr<Limit> reload(const config::LimitConfig& config, std::int64_t max_keys,
                                       const std::shared_ptr<Limit>& previous, Nanos now);

  // Use create() or reload(); `fresh_store` false: reload() supplies the buckets.
  Limit(Private, const config::LimitConfig& config, std::int64_t max_keys, bool fresh_store);
  ~Limit();
  Limit(const Limit&) = delete;
  Limit& operator=(const Limit&) = delete;

  // The configured name, scope and shadow flag.
  const std::string& name() const { return config_.name; }
  config::LimitScope scope() const { return config_.per; }
  bool shadow() const { return config_.shadow; }
  // The config this limit was built from (exempt CIDRs, `missing`, ...).
  const config::LimitConfig& config() const { return config_; }

  // True when `ip` is in the limit's exempt CIDRs (the caller marks the probe exempt).
  bool exempts(const client::IpAddr& ip) const;

  // Params for `key` (an override's when the key has one); global limits ignore the key.
  const KeyParams& paramsFor(const client::KeyHash& key) const;

  // The bucket of `key` at `now` without taking a token or tracking the key.
  KeyState peek(const client::KeyHash& key, Nanos now) const;

  // Removes keys whose bucket is full at `now`, examining at most
  // `max_entries` slots where the last call stopped; returns how many were
  // removed. A full pass over the table takes stats().keys-ish slots.
  std::size_t sweep(Nanos now, std::size_t max_entries);

  // The `n` tracked keys with the most denials (ties: most allowed), with their tokens at `now`.
  std::vector<KeyStats> topDenied(std::size_t n, Nanos now) const;

  // Counts a decision made elsewhere for this limit (a shared store).
  void record(Outcome outcome) { count(outcome); }

  // Counters since the buckets were created (they survive reload adoption).
  LimitStats stats() const;
  // Decisions with `outcome` so far.
  std::uint64_t decisions(Outcome outcome) const;

 private:
  friend Decision decide(std::span<Probe> probes, Nanos now);
  friend void refund(std::span<Probe> probes);
  struct Policy;
  struct BucketStore;

  // One token taken (or not) by decide().
  struct Take {
    bool admitted = false;
    Nanos interval = 0;  // the T taken, for giveBack()
    KeyState after;      // the bucket after the decision
  };

  // Takes one token for `key` at `now` when the bucket admits it.
  Take take(const client::KeyHash& key, Nanos now);
  // Returns a token taken by take() (a later limit denied the request).
  void giveBack(const client::KeyHash& key, Nanos interval);
  // Counts one decision.
  void count(Outcome outcome);
  // The limit whose params decide now: this one, or its newest reloaded successor.
  const Limit& current() const {
    const Limit* limit = this;
    while (const Limit* next = limit->successor_.load(std::memory_order_acquire)) limit = next;
    return *limit;
  }

  std::uint32_t tag() const { return generation_ & kTagMask; }
  // Params for `key` in this (the newest) limit's format; converts `tat` in
  // place when the state was written under the previous generation. Call
  // with the state pinned (shard lock held, or a CAS to follow), after
  // current() was read, so no decision ever writes an outdated format and
  // only this generation and the previous one can be present.
  const KeyParams& resolve(const client::KeyHash& key, Nanos now, Nanos& tat,
                           std::uint32_t state_tag) const;
  KeyState stateOf(Nanos tat, Nanos now, const KeyParams& params) const;
  // Re-expresses every adopted bucket in this limit's format at `now`.
  void convertAll(Nanos now);

  config::LimitConfig config_;
  std::int64_t max_keys_;
  std::uint32_t generation_ = 0;
  std::shared_ptr<const Policy> policy_;
  std::shared_ptr<const Policy> previous_policy_;  // of the limit this one was reloaded from
  std::shared_ptr<BucketStore> store_;
  std::atomic<Limit*> successor_{nullptr};
  std::shared_ptr<Limit> successor_owner_;
};

}  // namespace sluice::limiter
