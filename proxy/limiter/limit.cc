#include "proxy/limiter/limit.h"

#include <algorithm>
#include <random>

#include "proxy/client/client_ip.h"

namespace sluice::limiter {
namespace {

KeyParams makeParams(const config::Rate& rate, double burst) {
  // The loader resolves the burst default; repeat it for hand-built configs.
  const double resolved = burst > 0 ? burst : std::max(1.0, rate.count);
  const BucketParams bucket = bucketParams(rate, resolved);
  return {bucket, capacity(bucket), windowSeconds(bucket)};
}

std::uint64_t randomSeed() {
  std::random_device device;
  return (static_cast<std::uint64_t>(device()) << 32) ^ device();
}

bool moreDenied(const KeyStats& a, const KeyStats& b) {
  if (a.denied != b.denied) return a.denied > b.denied;
  return a.allowed > b.allowed;
}

}  // namespace

std::string_view outcomeName(Outcome outcome) {
  switch (outcome) {
    case Outcome::kAllowed:
      return "allowed";
    case Outcome::kDenied:
      return "denied";
    case Outcome::kShadowDenied:
      return "shadow_denied";
    case Outcome::kExempt:
      return "exempt";
  }
  return "unknown";
}

struct Limit::Policy {
  KeyParams base;
  std::vector<std::pair<client::KeyHash, KeyParams>> overrides;  // sorted by key

  const KeyParams& paramsFor(const client::KeyHash& key) const {
    if (overrides.empty()) return base;
    auto it = std::lower_bound(
        overrides.begin(), overrides.end(), key,
        [](const auto& entry, const client::KeyHash& k) { return entry.first < k; });
    return it != overrides.end() && it->first == key ? it->second : base;
  }
};

// Buckets and counters; shared by a limit and the limits reloaded from it.
struct Limit::BucketStore {
  BucketStore(bool keyed, std::int64_t max_keys)
      : table(keyed ? std::make_unique<KeyTable>(max_keys, randomSeed()) : nullptr) {}

  alignas(64) std::atomic<std::int64_t> global{packState(kMinStoredTat, 0)};
  std::unique_ptr<KeyTable> table;  // keyed limits only
  StripedCounters<kOutcomeCount> decisions;
};

Limit::Limit(Private, const config::LimitConfig& config, std::int64_t max_keys, bool fresh_store)
    : config_(config), max_keys_(std::max<std::int64_t>(1, max_keys)) {
  auto policy = std::make_shared<Policy>();
  policy->base = makeParams(config.rate, config.burst);
  if (config.per == config::LimitScope::kApiKey) {
    for (const auto& [key, override_config] : config.overrides) {
      policy->overrides.emplace_back(client::hashApiKey(key),
                                     makeParams(override_config.rate, override_config.burst));
    }
    std::sort(policy->overrides.begin(), policy->overrides.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
  }
  policy_ = std::move(policy);
  if (fresh_store) {
    store_ = std::make_shared<BucketStore>(config.per != config::LimitScope::kGlobal, max_keys_);
  }
}

Limit::~Limit() = default;

std::shared_ptr<Limit> Limit::create(const config::LimitConfig& config, std::int64_t max_keys) {
  return std::make_shared<Limit>(Private{}, config, max_keys, true);
}

std::shared_ptr<Limit> Limit::reload(const config::LimitConfig& config, std::int64_t max_keys,
                                     const std::shared_ptr<Limit>& previous, Nanos now) {
  if (!previous) return create(config, max_keys);
  Limit* base = previous.get();
  while (Limit* next = base->successor_.load(std::memory_order_acquire)) base = next;
  if (base->config_.name != config.name || base->config_.per != config.per) {
    return create(config, max_keys);
  }
  auto next = std::make_shared<Limit>(Private{}, config, max_keys, false);
  next->generation_ = base->generation_ + 1;
  next->previous_policy_ = base->policy_;
  next->store_ = base->store_;
  // From here on every decision, also through `base` (requests on the old
  // snapshot), uses the new params; then re-express every bucket.
  base->successor_owner_ = next;
  base->successor_.store(next.get(), std::memory_order_release);
  next->convertAll(now);
  return next;
}

void Limit::convertAll(Nanos now) {
  auto convert = [&](std::int64_t state, const client::KeyHash& key) {
    Nanos tat = stateTat(state);
    resolve(key, now, tat, stateTag(state));
    return packState(tat, tag());
  };
  if (store_->table) {
    store_->table->setMaxKeys(max_keys_);
    store_->table->forEach([&](Entry& entry) { entry.state = convert(entry.state, entry.key); });
  } else {
    std::int64_t state = store_->global.load(std::memory_order_acquire);
    while (!store_->global.compare_exchange_weak(state, convert(state, client::KeyHash{}),
                                                 std::memory_order_acq_rel,
                                                 std::memory_order_acquire)) {
    }
  }
}

bool Limit::exempts(const client::IpAddr& ip) const { return client::inAny(ip, config_.exempt); }

const KeyParams& Limit::paramsFor(const client::KeyHash& key) const {
  return current().policy_->paramsFor(key);
}

const KeyParams& Limit::resolve(const client::KeyHash& key, Nanos now, Nanos& tat,
                                std::uint32_t state_tag) const {
  const KeyParams& mine = policy_->paramsFor(key);
  if (state_tag != tag() && previous_policy_ && state_tag == ((generation_ - 1) & kTagMask)) {
    tat = convertTat(tat, now, previous_policy_->paramsFor(key).bucket, mine.bucket);
  }
  // Any other tag cannot occur while reloads are serialized: read it as ours.
  return mine;
}

KeyState Limit::stateOf(Nanos tat, Nanos now, const KeyParams& params) const {
  return {tokensLeft(tat, now, params.bucket), waitForToken(tat, now, params.bucket),
          timeToFull(tat, now), params};
}

Limit::Take Limit::take(const client::KeyHash& key, Nanos now) {
  Take result;
  if (store_->table) {
    store_->table->update(key, packState(kMinStoredTat, current().tag()), [&](Entry& entry) {
      const Limit& newest = current();  // read under the lock: see resolve()
      Nanos tat = stateTat(entry.state);
      const KeyParams& params = newest.resolve(key, now, tat, stateTag(entry.state));
      if (admits(tat, now, params.bucket)) {
        tat = afterTake(tat, now, params.bucket);
        result.admitted = true;
        result.interval = params.bucket.interval;
        ++entry.allowed;
      } else {
        ++entry.denied;
      }
      entry.state = packState(tat, newest.tag());
      result.after = stateOf(tat, now, params);
    });
    return result;
  }
  // Acquire pairs with the release of a reload's conversion CAS: a state in
  // the new format implies current() sees the new limit.
  std::int64_t state = store_->global.load(std::memory_order_acquire);
  while (true) {
    const Limit& newest = current();
    Nanos tat = stateTat(state);
    const KeyParams& params = newest.resolve(key, now, tat, stateTag(state));
    if (!admits(tat, now, params.bucket)) {
      result.after = stateOf(tat, now, params);
      return result;
    }
    const Nanos next = afterTake(tat, now, params.bucket);
    if (store_->global.compare_exchange_weak(state, packState(next, newest.tag()),
                                             std::memory_order_acq_rel,
                                             std::memory_order_acquire)) {
      result.admitted = true;
      result.interval = params.bucket.interval;
      result.after = stateOf(next, now, params);
      return result;
    }
  }
}

void Limit::giveBack(const client::KeyHash& key, Nanos interval) {
  // TAT went from t to max(t, now) + T; subtracting T restores max(t, now),
  // the same bucket at every instant >= now. Takes by others in between are
  // kept (the subtraction commutes with them).
  auto back = [interval](std::int64_t state) {
    return packState(saturatingAdd(stateTat(state), -interval), stateTag(state));
  };
  if (store_->table) {
    store_->table->updateExisting(key, [&](Entry& entry) { entry.state = back(entry.state); });
    return;
  }
  std::int64_t state = store_->global.load(std::memory_order_acquire);
  while (!store_->global.compare_exchange_weak(state, back(state), std::memory_order_acq_rel,
                                               std::memory_order_acquire)) {
  }
}

void Limit::count(Outcome outcome) { store_->decisions.add(static_cast<std::size_t>(outcome)); }

KeyState Limit::peek(const client::KeyHash& key, Nanos now) const {
  KeyState state = stateOf(kMinStoredTat, now, paramsFor(key));
  auto read = [&](std::int64_t packed) {
    const Limit& newest = current();
    Nanos tat = stateTat(packed);
    const KeyParams& params = newest.resolve(key, now, tat, stateTag(packed));
    state = stateOf(tat, now, params);
  };
  if (store_->table) {
    store_->table->updateExisting(key, [&](Entry& entry) { read(entry.state); });
  } else {
    read(store_->global.load(std::memory_order_acquire));
  }
  return state;
}

std::size_t Limit::sweep(Nanos now, std::size_t max_entries) {
  return store_->table ? store_->table->sweep(now, max_entries) : 0;
}

std::vector<KeyStats> Limit::topDenied(std::size_t n, Nanos now) const {
  std::vector<KeyStats> heap;  // min-heap on moreDenied: the weakest at the front
  if (!store_->table || n == 0) return heap;
  heap.reserve(n);
  store_->table->forEach([&](Entry& entry) {
    KeyStats stats{entry.key, 0, entry.allowed, entry.denied};
    if (heap.size() == n && !moreDenied(stats, heap.front())) return;
    Nanos tat = stateTat(entry.state);
    const KeyParams& params = current().resolve(entry.key, now, tat, stateTag(entry.state));
    stats.remaining = tokensLeft(tat, now, params.bucket);
    if (heap.size() == n) {
      std::pop_heap(heap.begin(), heap.end(), moreDenied);
      heap.back() = stats;
    } else {
      heap.push_back(stats);
    }
    std::push_heap(heap.begin(), heap.end(), moreDenied);
  });
  std::sort_heap(heap.begin(), heap.end(), moreDenied);
  return heap;
}

LimitStats Limit::stats() const {
  LimitStats stats;
  for (std::size_t i = 0; i < kOutcomeCount; ++i) stats.decisions[i] = store_->decisions.sum(i);
  if (store_->table) {
    stats.keys = store_->table->size();
    stats.swept = store_->table->swept();
    stats.evicted = store_->table->evicted();
    stats.memory_bytes = store_->table->memoryBytes();
  } else {
    stats.keys = 1;
  }
  return stats;
}

std::uint64_t Limit::decisions(Outcome outcome) const {
  return store_->decisions.sum(static_cast<std::size_t>(outcome));
}

}  // namespace sluice::limiter
