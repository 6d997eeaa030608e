#include "proxy/app/admission_impl.h"

#include <array>
#include <atomic>
#include <cstdio>
#include <unordered_map>
#include <optional>

#include "proxy/client/api_key.h"
#include "proxy/client/client_ip.h"
#include "proxy/client/key_hash.h"
#include "proxy/event/clock.h"
#include "proxy/http/response_writer.h"
#include "proxy/limiter/bucket.h"
#include "proxy/limiter/decide.h"
#include "proxy/limiter/limit.h"
#include "proxy/store/redis_store.h"

namespace sluice::app {
namespace {

using limiter::Outcome;

constexpr std::size_t kMaxStackProbes = 16;

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

class LimiterAdmission final : public server::AdmissionContext {
 public:
  LimiterAdmission(const config::Config& cfg, const exchange::Runtime* previous,
                   std::shared_ptr<store::RedisStore> store, metrics::StatusStats* store_stats,
                   int workers, limiter::Nanos now)
      : cfg_(cfg), store_(std::move(store)), store_stats_(store_stats), pending_(workers) {
    const LimiterAdmission* prev = nullptr;
    if (previous != nullptr && previous->admission) {
      prev = dynamic_cast<const LimiterAdmission*>(previous->admission.get());
    }
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

  void decide(const server::RouteLimits& route, const server::RequestView& req,
              std::int64_t now, server::AdmissionResult* out) override {
    const auto& idx = route.limit_indexes;
    if (idx.empty()) return;
    std::array<limiter::Probe, kMaxStackProbes> stack_probes;
    std::vector<limiter::Probe> heap_probes;
    limiter::Probe* probes = stack_probes.data();
    if (idx.size() > kMaxStackProbes) {
      heap_probes.resize(idx.size());
      probes = heap_probes.data();
    }
    std::optional<client::ClientIp> ip;
    std::optional<client::KeyHash> ip_key;
    std::optional<client::ApiKey> api_key;
    auto clientIp = [&]() -> const client::ClientIp& {
      if (!ip) ip = client::clientIp(req.peer, req.xff, cfg_.clients.trusted_proxies);
      return *ip;
    };
    auto ipKey = [&]() -> const client::KeyHash& {
      if (!ip_key) {
        ip_key = client::hashIpKey(
            client::ipKey(clientIp().ip, cfg_.clients.ipv4_prefix, cfg_.clients.ipv6_prefix));
      }
      return *ip_key;
    };
    std::size_t n = 0;       // local probes: probes[0, n)
    std::size_t remote = 0;  // remote probes: probes[idx.size() - remote, idx.size())
    for (std::size_t i : idx) {
      limiter::Limit* limit = limits_[i].get();
      const auto& lc = limit->config();
      limiter::Probe p;
      p.limit = limit;
      if (!lc.exempt.empty() && limit->exempts(clientIp().ip)) p.exempt = true;
      switch (lc.per) {
        case config::LimitScope::kGlobal:
          break;
        case config::LimitScope::kIp:
          if (!p.exempt) p.key = ipKey();
          break;
        case config::LimitScope::kApiKey: {
          if (!api_key) {
            api_key = client::apiKey(
                req.has_api_key_header ? std::optional<std::string_view>(req.api_key_header)
                                       : std::nullopt,
                req.query, cfg_.clients.api_key.query);
          }
          if (api_key->status == client::ApiKeyStatus::kTooLong) {
            out->status = 400;
            return;
          }
          if (api_key->status == client::ApiKeyStatus::kFound) {
            p.key = client::hashApiKey(api_key->value);
          } else if (lc.missing == config::MissingKey::kSkip) {
            continue;  // this limit does not apply
          } else if (lc.missing == config::MissingKey::kReject) {
            out->status = 401;
            return;
          } else if (!p.exempt) {
            p.key = ipKey();
          }
          break;
        }
      }
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
      deny(local, d, out);
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
    for (const auto& l : limits_) {
      const limiter::LimitStats s = l->stats();
      metrics::LimitSample m;
      m.name = l->name();
      m.allowed = s.decisions[static_cast<std::size_t>(Outcome::kAllowed)];
      m.denied = s.decisions[static_cast<std::size_t>(Outcome::kDenied)];
      m.shadow_denied = s.decisions[static_cast<std::size_t>(Outcome::kShadowDenied)];
      m.exempt = s.decisions[static_cast<std::size_t>(Outcome::kExempt)];
      m.keys = static_cast<std::int64_t>(s.keys);
      m.swept = s.swept;
      m.evicted = s.evicted;
      const std::size_t i = indexOf(l.get());
      m.fallbacks = fallbacks_[i].load(std::memory_order_relaxed);
      m.redis = l->config().store == config::StoreKind::kRedis;
      out->push_back(std::move(m));
    }
  }

  void sweep(std::int64_t now) override {
    // Called every kSweepTick: each call examines a bounded slice per limit,
    // sized so that a full pass over the table takes about sweep_interval.
    const std::int64_t ticks = std::max<std::int64_t>(
        1, cfg_.limiter.sweep_interval.nanos / server::kSweepTick);
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
    const limiter::Limit* limit = nullptr;
    for (const auto& l : limits_) {
      if (l->name() == name) limit = l.get();
    }
    if (limit == nullptr) return false;
    const int v4 = cfg_.clients.ipv4_prefix;
    const int v6 = cfg_.clients.ipv6_prefix;
    json->append("{\"limit\":\"");
    json->append(limit->name());
    json->append("\",\"per\":\"");
    json->append(config::toString(limit->scope()));
    json->append("\",\"keys\":[");
    bool first = true;
    for (const limiter::KeyStats& k : limit->topDenied(top, now)) {
      if (!first) json->push_back(',');
      first = false;
      json->append("{\"key\":\"");
      json->append(keyText(limit->scope(), k.key, v4, v6));
      json->append("\",\"tokens\":");
      json->append(std::to_string(k.remaining));
      json->append(",\"allowed\":");
      json->append(std::to_string(k.allowed));
      json->append(",\"denied\":");
      json->append(std::to_string(k.denied));
      json->push_back('}');
    }
    json->append("]}\n");
    return true;
  }

  // IP keys as their network; API keys as an 8-hex-digit fingerprint. An
  // api_key limit also holds IP buckets (missing: ip): those invert to a
  // masked address, which a hashed API key practically never does.
  static std::string keyText(config::LimitScope scope, const client::KeyHash& key, int v4,
                             int v6) {
    if (scope == config::LimitScope::kGlobal) return "global";
    const client::IpAddr ip = client::ipFromKey(key);
    if (scope == config::LimitScope::kIp || looksLikeIpKey(ip, v4, v6)) {
      return client::ipKeyText(ip, v4, v6);
    }
    return client::fingerprint(key);
  }

  static bool looksLikeIpKey(const client::IpAddr& ip, int v4, int v6) {
    if (client::isIpv4(ip)) {
      const client::IpAddr masked = client::ipKey(ip, v4, v6);
      return masked == ip;
    }
    if (v6 >= 128) return false;
    return client::ipKey(ip, v4, v6) == ip;
  }

 private:
  static constexpr std::int64_t kMinSweepSlice = 1024;
  static constexpr std::int64_t kMaxSweepSlice = 30000;  // about 1 ms of sweeping (limiter_bench)

  // RateLimit-Policy / RateLimit (draft-ietf-httpapi-ratelimit-headers-10) or
  // X-RateLimit-*, for one limit. `t` is seconds until a token is back
  // (0: omitted, the bucket is full).
  // One request waiting for the store.
  struct Pending {
    LimiterAdmission* self = nullptr;
    server::AdmissionWaiter* waiter = nullptr;
    int worker = 0;
    std::uint64_t ticket = 0;
    std::uint64_t store_ticket = 0;
    std::vector<limiter::Probe> local;   // tokens taken locally (refunded on denial)
    std::vector<limiter::Probe> remote;  // limits decided by the store
    limiter::Nanos now = 0;
  };

  // Answers a denied request: 429 with Retry-After and the headline limit.
  void deny(std::span<limiter::Probe> probes, const limiter::Decision& d,
            server::AdmissionResult* out) const {
    out->status = 429;
    for (const limiter::Probe& p : probes) {
      if (p.outcome == Outcome::kDenied) out->violated.push_back(p.limit->name());
    }
    appendRetryAfter(out->headers, d.retry_after_seconds);
    if (d.headline >= 0) {
      appendLimitHeaders(out->headers, viewOf(probes[static_cast<std::size_t>(d.headline)]),
                         cfg_.limiter.header_style, d.retry_after_seconds);
    }
  }

  static void appendRetryAfter(std::string& h, std::int64_t seconds) {
    h.append("Retry-After: ");
    http::appendNumber(h, static_cast<unsigned long long>(std::max<std::int64_t>(1, seconds)));
    h.append("\r\n");
  }

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

  void askStore(std::span<limiter::Probe> local, std::span<limiter::Probe> remote,
                const server::RequestView& req, limiter::Nanos now, server::AdmissionResult* out) {
    auto pending = std::make_unique<Pending>();
    pending->self = this;
    pending->waiter = req.waiter;
    pending->worker = req.worker;
    pending->ticket = next_ticket_.fetch_add(1, std::memory_order_relaxed);
    pending->local.assign(local.begin(), local.end());
    pending->remote.assign(remote.begin(), remote.end());
    pending->now = now;
    std::vector<store::KeyRequest> keys;
    for (limiter::Probe& p : pending->remote) {
      const limiter::KeyParams& params = p.limit->paramsFor(p.key);
      // Microseconds keep the script's integers exact in Lua's doubles; T is
      // rounded up and tolerance keeps the burst ratio, so never over-admits.
      const std::int64_t interval_us = (params.bucket.interval + 999) / 1000;
      const double ratio = static_cast<double>(params.bucket.tolerance) /
                           static_cast<double>(params.bucket.interval);
      const auto tolerance_us =
          static_cast<std::int64_t>(static_cast<double>(interval_us) * ratio + 1e-6);
      p.burst = params.burst;
      p.window_seconds = params.window_seconds;
      p.interval = interval_us * 1000;
      keys.push_back({redisKey(p), interval_us, tolerance_us});
    }
    Pending* raw = pending.get();
    auto& map = pending_[static_cast<std::size_t>(req.worker)];
    map[raw->ticket] = std::move(pending);
    out->status = server::kAdmissionPending;
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
    server::AdmissionResult out;
    bool denied = false;
    std::int64_t retry_after = 1;
    std::vector<BucketView> views;  // remote buckets for headers
    int headline = -1;
    if (reply.result == store::Result::kOk && reply.keys.size() == p->remote.size()) {
      for (std::size_t i = 0; i < p->remote.size(); ++i) {
        const store::KeyReply& k = reply.keys[i];
        limiter::Probe& probe = p->remote[i];
        BucketView v{probe.limit->name(), probe.burst, probe.window_seconds, k.remaining,
                     k.wait_us * 1000, k.full_in_us * 1000, probe.interval};
        views.push_back(v);
        if (!reply.allowed && !k.admitted) {
          denied = true;
          out.violated.push_back(probe.limit->name());
          probe.limit->record(Outcome::kDenied);
          const std::int64_t secs = std::max<std::int64_t>(1, limiter::ceilSeconds(v.wait));
          if (headline < 0 || secs > retry_after) {
            retry_after = secs;
            headline = static_cast<int>(i);
          }
        } else {
          probe.limit->record(Outcome::kAllowed);
        }
      }
    } else {
      // Redis slow or down: each limit's on_store_error decides, at once.
      std::vector<limiter::Probe> fallback;
      for (limiter::Probe& probe : p->remote) {
        const auto i = indexOf(probe.limit);
        fallbacks_[i].fetch_add(1, std::memory_order_relaxed);
        switch (probe.limit->config().on_store_error) {
          case config::StoreErrorPolicy::kLocal:
            fallback.push_back(probe);
            break;
          case config::StoreErrorPolicy::kAllow:
            probe.limit->record(Outcome::kAllowed);
            break;
          case config::StoreErrorPolicy::kDeny:
            probe.limit->record(Outcome::kDenied);
            denied = true;
            out.violated.push_back(probe.limit->name());
            break;
        }
      }
      if (!fallback.empty() && !denied) {
        const limiter::Decision d = limiter::decide(fallback, p->now);
        if (!d.allowed) {
          limiter::refund(p->local);
          deny(fallback, d, &out);
          deliver(p, out);
          return;
        }
      }
    }
    if (denied) {
      limiter::refund(p->local);
      out.status = 429;
      appendRetryAfter(out.headers, retry_after);
      if (headline >= 0) {
        appendLimitHeaders(out.headers, views[static_cast<std::size_t>(headline)],
                           cfg_.limiter.header_style, retry_after);
      }
    } else if (cfg_.limiter.response_headers) {
      // The tightest bucket among local and remote limits.
      const BucketView* best = nullptr;
      for (const limiter::Probe& probe : p->local) {
        if (probe.outcome != Outcome::kAllowed || probe.limit->shadow()) continue;
        views.push_back(viewOf(probe));
      }
      for (const BucketView& v : views) {
        if (best == nullptr || v.remaining < best->remaining) best = &v;
      }
      if (best != nullptr) {
        appendLimitHeaders(out.allowed_headers, *best, cfg_.limiter.header_style,
                           nextTokenSeconds(*best));
      }
    }
    deliver(p, out);
  }

  void deliver(Pending* p, server::AdmissionResult& out) {
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

  // RateLimit-Policy / RateLimit (draft-ietf-httpapi-ratelimit-headers-10) or
  // X-RateLimit-*, for one limit. `t` is seconds until a token is back
  // (0: omitted, the bucket is full).
  static void appendLimitHeaders(std::string& h, const BucketView& p, config::HeaderStyle style,
                                 std::int64_t t) {
    const auto num = [&h](std::int64_t v) {
      http::appendNumber(h, static_cast<unsigned long long>(std::max<std::int64_t>(0, v)));
    };
    if (style == config::HeaderStyle::kIetf) {
      h.append("RateLimit-Policy: \"");
      h.append(p.name);
      h.append("\";q=");
      num(p.burst);
      h.append(";w=");
      num(p.window_seconds);
      h.append("\r\nRateLimit: \"");
      h.append(p.name);
      h.append("\";r=");
      num(p.remaining);
      if (t > 0) {
        h.append(";t=");
        num(t);
      }
      h.append("\r\n");
    } else if (style == config::HeaderStyle::kXRateLimit) {
      h.append("X-RateLimit-Limit: ");
      num(p.burst);
      h.append("\r\nX-RateLimit-Remaining: ");
      num(p.remaining);
      h.append("\r\nX-RateLimit-Reset: ");
      num(limiter::ceilSeconds(p.full_in));
      h.append("\r\n");
    }
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

std::shared_ptr<server::AdmissionContext> makeAdmission(
    const config::Config& cfg, const exchange::Runtime* previous,
    std::shared_ptr<store::RedisStore> store, metrics::StatusStats* store_stats, int workers,
    event::Nanos now) {
  return std::make_shared<LimiterAdmission>(cfg, previous, std::move(store), store_stats, workers,
                                            now);
}

server::RouteLimits compileRouteLimits(const config::Config& cfg,
                                       const config::RouteConfig& route) {
  server::RouteLimits out;
  for (const auto& name : route.limits) {
    for (std::size_t i = 0; i < cfg.limits.size(); ++i) {
      if (cfg.limits[i].name == name) out.limit_indexes.push_back(i);
    }
  }
  return out;
}

}  // namespace sluice::app
