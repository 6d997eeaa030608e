#include "proxy/app/admission_impl.h"

#include <array>
#include <optional>

#include "proxy/client/api_key.h"
#include "proxy/client/client_ip.h"
#include "proxy/client/key_hash.h"
#include "proxy/event/clock.h"
#include "proxy/http/response_writer.h"
#include "proxy/limiter/bucket.h"
#include "proxy/limiter/decide.h"
#include "proxy/limiter/limit.h"

namespace sluice::app {
namespace {

using limiter::Outcome;

constexpr std::size_t kMaxStackProbes = 16;

// Seconds until the next whole token is back (RateLimit `t` on an allowed
// response), from the time until the bucket is full.
std::int64_t nextTokenSeconds(const limiter::Probe& p) {
  const std::int64_t missing = p.burst - p.remaining;  // whole tokens short of full
  if (missing <= 0) return 0;
  limiter::Nanos next = p.full_in - (missing - 1) * p.interval;
  if (next < 0) next = 0;
  return std::max<std::int64_t>(1, limiter::ceilSeconds(next));
}

class LimiterAdmission final : public server::AdmissionContext {
 public:
  LimiterAdmission(const config::Config& cfg, const server::Runtime* previous) : cfg_(cfg) {
    const LimiterAdmission* prev = nullptr;
    if (previous != nullptr && previous->admission) {
      prev = dynamic_cast<const LimiterAdmission*>(previous->admission.get());
    }
    const limiter::Nanos now = event::SteadyClock::instance().now();
    for (const auto& lc : cfg.limits) {
      std::shared_ptr<limiter::Limit> old;
      if (prev != nullptr) {
        for (const auto& l : prev->limits_) {
          if (l->name() == lc.name) old = l;
        }
      }
      limits_.push_back(old ? limiter::Limit::reload(lc, cfg.limiter.max_keys, old, now)
                            : limiter::Limit::create(lc, cfg.limiter.max_keys));
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
    std::size_t n = 0;
    for (std::size_t i : idx) {
      limiter::Limit* limit = limits_[i].get();
      const auto& lc = limit->config();
      limiter::Probe& p = probes[n];
      p = limiter::Probe{};
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
      ++n;
    }
    if (n == 0) return;
    std::span<limiter::Probe> span(probes, n);
    const limiter::Decision d = limiter::decide(span, now);
    const auto style = cfg_.limiter.header_style;
    if (!d.allowed) {
      out->status = 429;
      for (const limiter::Probe& p : span) {
        if (p.outcome == Outcome::kDenied) out->violated.push_back(p.limit->name());
      }
      std::string& h = out->headers;
      h.append("Retry-After: ");
      http::appendNumber(h, static_cast<unsigned long long>(d.retry_after_seconds));
      h.append("\r\n");
      if (d.headline >= 0) {
        appendLimitHeaders(h, span[static_cast<std::size_t>(d.headline)], style,
                           d.retry_after_seconds);
      }
      return;
    }
    if (cfg_.limiter.response_headers && d.headline >= 0) {
      const limiter::Probe& p = span[static_cast<std::size_t>(d.headline)];
      appendLimitHeaders(out->allowed_headers, p, style, nextTokenSeconds(p));
    }
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
  static void appendLimitHeaders(std::string& h, const limiter::Probe& p, config::HeaderStyle style,
                                 std::int64_t t) {
    const auto num = [&h](std::int64_t v) {
      http::appendNumber(h, static_cast<unsigned long long>(std::max<std::int64_t>(0, v)));
    };
    if (style == config::HeaderStyle::kIetf) {
      h.append("RateLimit-Policy: \"");
      h.append(p.limit->name());
      h.append("\";q=");
      num(p.burst);
      h.append(";w=");
      num(p.window_seconds);
      h.append("\r\nRateLimit: \"");
      h.append(p.limit->name());
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
};

}  // namespace

std::shared_ptr<server::AdmissionContext> makeAdmission(const config::Config& cfg,
                                                        const server::Runtime* previous) {
  return std::make_shared<LimiterAdmission>(cfg, previous);
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
