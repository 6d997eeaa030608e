#include "proxy/admission/limiter_admission.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>
#include <unordered_map>

#include "proxy/admission/headers.h"
#include "proxy/admission/plan.h"
#include "proxy/admission/store_verdict.h"
#include "proxy/admission/top_keys.h"
#include "proxy/limiter/bucket.h"
#include "proxy/limiter/decide.h"
#include "proxy/limiter/limit.h"

namespace sluice::admission {
namespace {

using limiter::Outcome;

constexpr std::size_t kMaxStackProbes = 16;

class LimiterAdmission final : public AdmissionContext {
 public:
  LimiterAdmission(const config::Config& cfg, const AdmissionContext* previous,
                   std::shared_ptr<store::RedisStore> store, metrics::StatusStats* store_stats,
                   int workers, limiter::Nanos now)
      : cfg_(cfg), store_(std::move(store)), store_stats_(store_stats), pending_(workers) {
    const auto* prev = dynamic_cast<const LimiterAdmission*>(previous);
    fallbacks_ = std::make_unique<std::atomic<std::uint64_t>[]>(cfg.limits.size());
    for (std::size_t i = 0; i < cfg.limits.size(); ++i) {
      const auto& lc = cfg.limits[i];
      std::shared_ptr<limiter::Limit> old;
      if (prev != nullptr) {
        for (std::size_t k = 0; k < prev->limits_.size(); ++k) {
          if (prev->limits_[k]->name() == lc.name) {
            old = prev->limits_[k];
            fallbacks_[i].store(prev->fallbacks_[k].load());
          }
        }
      }
      limits_.push_back(old ? limiter::Limit::reload(lc, cfg.limiter.max_keys, old, now)
                            : limiter::Limit::create(lc, cfg.limiter.max_keys));
      // Shadow limits never deny, so they stay local even with store: redis.
      remote_.push_back(store_ && lc.store == config::StoreKind::kRedis && !lc.shadow);
    }
  }

  void decide(const RouteLimits& route, const RequestView& req, std::int64_t now,
              AdmissionResult* out) override {
    const auto& idx = route.limit_indexes;
    if (idx.empty()) return;
    std::array<limiter::Probe, kMaxStackProbes> stack_probes;
    std::vector<limiter::Probe> heap_probes;
    limiter::Probe* probes = stack_probes.data();
    if (idx.size() > kMaxStackProbes) {
      heap_probes.resize(idx.size());
      probes = heap_probes.data();
    }
    Identity id(cfg_.clients, req);
    std::size_t n = 0;       // local probes: probes[0, n)
    std::size_t remote = 0;  // remote probes: probes[idx.size() - remote, idx.size())
    for (std::size_t i : idx) {
      limiter::Limit* limit = limits_[i].get();
      const LimitKey k = limitKey(limit->config(), id);
      if (k.kind == KeyKind::kSkip) continue;
      if (const int status = localAnswer(k.kind); status != 0) {
        out->status = status;
        return;
      }
      const limiter::Probe p(limit, k.key, k.exempt);
      if (remote_[i] && !p.exempt) {
        probes[idx.size() - 1 - remote] = p;
        ++remote;
      } else {
        probes[n++] = p;
      }
    }
    std::span<limiter::Probe> local(probes, n);
    limiter::Decision d;
    if (n > 0) d = limiter::decide(local, now);
    if (!d.allowed) {
      renderDenial(local, d, cfg_.limiter.header_style, out);
      return;
    }
    if (remote > 0) {
      askStore(local, std::span<limiter::Probe>(probes + idx.size() - remote, remote), req, now,
               out);
      return;
    }
    if (cfg_.limiter.response_headers && d.headline >= 0) {
      const BucketView v = viewOf(local[static_cast<std::size_t>(d.headline)]);
      appendLimitHeaders(out->allowed_headers, v, cfg_.limiter.header_style, nextTokenSeconds(v));
    }
  }

  void cancel(int worker, std::uint64_t ticket) override {
    auto& map = pending_[static_cast<std::size_t>(worker)];
    auto it = map.find(ticket);
    if (it == map.end()) return;
    if (store_) store_->cancel(worker, it->second->store_ticket);
    map.erase(it);
  }

  void sample(std::vector<metrics::LimitSample>* out) const override {
    for (std::size_t i = 0; i < limits_.size(); ++i) {
      const limiter::Limit& l = *limits_[i];
      const limiter::LimitStats s = l.stats();
      metrics::LimitSample m;
      m.name = l.name();
      m.allowed = s.decisions[static_cast<std::size_t>(Outcome::kAllowed)];
      m.denied = s.decisions[static_cast<std::size_t>(Outcome::kDenied)];
      m.shadow_denied = s.decisions[static_cast<std::size_t>(Outcome::kShadowDenied)];
      m.exempt = s.decisions[static_cast<std::size_t>(Outcome::kExempt)];
      m.keys = static_cast<std::int64_t>(s.keys);
      m.swept = s.swept;
      m.evicted = s.evicted;
      m.fallbacks = fallbacks_[i].load(std::memory_order_relaxed);
      m.redis = l.config().store == config::StoreKind::kRedis;
      out->push_back(std::move(m));
    }
  }

  void sweep(std::int64_t now) override {
    // Called every kSweepTick: each call examines a bounded slice per limit,
    // sized so that a full pass over the table takes about sweep_interval.
    const std::int64_t ticks =
        std::max<std::int64_t>(1, cfg_.limiter.sweep_interval.nanos / kSweepTick);
    for (const auto& l : limits_) {
      if (l->scope() == config::LimitScope::kGlobal) continue;
      const auto keys = static_cast<std::int64_t>(l->stats().keys);
      const auto slice = static_cast<std::size_t>(
          std::clamp<std::int64_t>(2 * keys / ticks + 1, kMinSweepSlice, kMaxSweepSlice));
      l->sweep(now, slice);
    }
  }

  bool topKeys(std::string_view name, std::size_t top, std::int64_t now,
               std::string* json) const override {
    for (const auto& l : limits_) {
      if (l->name() != name) continue;
      appendTopKeysJson(*l, top, now, cfg_.clients, json);
      return true;
    }
    return false;
  }

 private:
  static constexpr std::int64_t kMinSweepSlice = 1024;
  static constexpr std::int64_t kMaxSweepSlice = 30000;  // about 1 ms of sweeping (limiter_bench)

  // One request waiting for the store.
  struct Pending {
    LimiterAdmission* self = nullptr;
    AdmissionWaiter* waiter = nullptr;
    int worker = 0;
    std::uint64_t ticket = 0;
    std::uint64_t store_ticket = 0;
    std::vector<limiter::Probe> local;   // tokens taken locally (refunded on denial)
    std::vector<limiter::Probe> remote;  // limits decided by the store
    limiter::Nanos now = 0;
  };

  std::string redisKey(const limiter::Probe& p) const {
    std::string key = store_->config().key_prefix;
    key.append(p.limit->name());
    key.push_back(':');
    if (p.limit->scope() == config::LimitScope::kGlobal) {
      key.append("global");
    } else {
      char hex[40];
      std::snprintf(hex, sizeof hex, "%016llx%016llx", static_cast<unsigned long long>(p.key.hi),
                    static_cast<unsigned long long>(p.key.lo));
      key.append(hex);
    }
    return key;
  }

  // The store request for probe `p`, which learns the parameters it was sent with.
  store::KeyRequest storeRequest(limiter::Probe& p) const {
    const limiter::KeyParams& params = p.limit->paramsFor(p.key);
    // Microseconds keep the script's integers exact in Lua's doubles; T is
    // rounded up and tolerance keeps the burst ratio, so never over-admits.
    const std::int64_t interval_us = (params.bucket.interval + 999) / 1000;
    const double ratio =
        static_cast<double>(params.bucket.tolerance) / static_cast<double>(params.bucket.interval);
    const auto tolerance_us =
        static_cast<std::int64_t>(static_cast<double>(interval_us) * ratio + 1e-6);
    p.burst = params.burst;
    p.window_seconds = params.window_seconds;
    p.interval = interval_us * 1000;
    return {redisKey(p), interval_us, tolerance_us};
  }

  void askStore(std::span<limiter::Probe> local, std::span<limiter::Probe> remote,
                const RequestView& req, limiter::Nanos now, AdmissionResult* out) {
    auto pending = std::make_unique<Pending>();
    pending->self = this;
    pending->waiter = req.waiter;
    pending->worker = req.worker;
    pending->ticket = next_ticket_.fetch_add(1, std::memory_order_relaxed);
    pending->local.assign(local.begin(), local.end());
    pending->remote.assign(remote.begin(), remote.end());
    pending->now = now;
    std::vector<store::KeyRequest> keys;
    for (limiter::Probe& p : pending->remote) keys.push_back(storeRequest(p));
    Pending* raw = pending.get();
    auto& map = pending_[static_cast<std::size_t>(req.worker)];
    map[raw->ticket] = std::move(pending);
    out->status = kAdmissionPending;
    out->ticket = raw->ticket;
    raw->store_ticket = store_->decide(req.worker, req.base, std::move(keys),
                                       &LimiterAdmission::onStoreReply, raw, now);
  }

  static void onStoreReply(void* ctx, const store::Reply& reply) {
    auto* p = static_cast<Pending*>(ctx);
    p->self->finishPending(p, reply);
  }

  void finishPending(Pending* p, const store::Reply& reply) {
    const int result = reply.result == store::Result::kOk      ? 0
                       : reply.result == store::Result::kError ? 1
                                                               : 2;
    if (store_stats_ != nullptr) store_stats_->record(p->worker, result, reply.took);
    RemoteVerdict v = readStoreReply(p->remote, reply);
    AdmissionResult out;
    bool denied = false;
    std::vector<limiter::Probe> fallback;
    for (std::size_t i = 0; i < p->remote.size(); ++i) {
      limiter::Probe& probe = p->remote[i];
      if (v.store_failed) fallbacks_[indexOf(probe.limit)].fetch_add(1, std::memory_order_relaxed);
      switch (v.outcomes[i]) {
        case RemoteOutcome::kAllowed:
          probe.limit->record(Outcome::kAllowed);
          break;
        case RemoteOutcome::kDenied:
          probe.limit->record(Outcome::kDenied);
          denied = true;
          out.violated.push_back(probe.limit->name());
          break;
        case RemoteOutcome::kDecideLocally:
          fallback.push_back(probe);
          break;
      }
    }
    if (!fallback.empty() && !denied) {
      const limiter::Decision d = limiter::decide(fallback, p->now);
      if (!d.allowed) {
        limiter::refund(p->local);
        renderDenial(fallback, d, cfg_.limiter.header_style, &out);
        deliver(p, out);
        return;
      }
    }
    if (denied) {
      limiter::refund(p->local);
      out.status = 429;
      appendRetryAfter(out.headers, v.retry_after);
      if (v.headline >= 0) {
        appendLimitHeaders(out.headers, v.views[static_cast<std::size_t>(v.headline)],
                           cfg_.limiter.header_style, v.retry_after);
      }
    } else if (cfg_.limiter.response_headers) {
      appendTightest(p->local, v.views, &out);
    }
    deliver(p, out);
  }

  // The headers of the tightest bucket among the store's and the local
  // limits that admitted and enforce.
  void appendTightest(std::span<const limiter::Probe> local, std::vector<BucketView>& views,
                      AdmissionResult* out) const {
    for (const limiter::Probe& probe : local) {
      if (probe.outcome != Outcome::kAllowed || probe.limit->shadow()) continue;
      views.push_back(viewOf(probe));
    }
    const BucketView* best = nullptr;
    for (const BucketView& v : views) {
      if (best == nullptr || v.remaining < best->remaining) best = &v;
    }
    if (best != nullptr) {
      appendLimitHeaders(out->allowed_headers, *best, cfg_.limiter.header_style,
                         nextTokenSeconds(*best));
    }
  }

  void deliver(Pending* p, AdmissionResult& out) {
    auto& map = pending_[static_cast<std::size_t>(p->worker)];
    auto it = map.find(p->ticket);
    if (it == map.end()) return;
    std::unique_ptr<Pending> owned = std::move(it->second);
    map.erase(it);
    owned->waiter->onAdmission(out);
  }

  std::size_t indexOf(const limiter::Limit* limit) const {
    for (std::size_t i = 0; i < limits_.size(); ++i) {
      if (limits_[i].get() == limit) return i;
    }
    return 0;
  }

  const config::Config& cfg_;
  std::vector<std::shared_ptr<limiter::Limit>> limits_;
  std::vector<bool> remote_;  // parallel to limits_: decided by the store
  std::shared_ptr<store::RedisStore> store_;
  metrics::StatusStats* store_stats_ = nullptr;
  std::unique_ptr<std::atomic<std::uint64_t>[]> fallbacks_;
  std::vector<std::unordered_map<std::uint64_t, std::unique_ptr<Pending>>> pending_;  // per worker
  std::atomic<std::uint64_t> next_ticket_{1};
};

}  // namespace

std::shared_ptr<AdmissionContext> makeAdmission(const config::Config& cfg,
                                                const AdmissionContext* previous,
                                                std::shared_ptr<store::RedisStore> store,
                                                metrics::StatusStats* store_stats, int workers,
                                                event::Nanos now) {
  return std::make_shared<LimiterAdmission>(cfg, previous, std::move(store), store_stats, workers,
                                            now);
}

RouteLimits compileRouteLimits(const config::Config& cfg, const config::RouteConfig& route) {
  RouteLimits out;
  for (const auto& name : route.limits) {
    for (std::size_t i = 0; i < cfg.limits.size(); ++i) {
      if (cfg.limits[i].name == name) out.limit_indexes.push_back(i);
    }
  }
  return out;
}

}  // namespace sluice::admission
