#include "proxy/metrics/metrics.h"

#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <sstream>

namespace sluice::metrics {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

MetricFamily family(const char* name, const char* help, MetricType type) {
  MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  return f;
}

ClientMetric sample(std::vector<ClientMetric::Label> labels, double value, MetricType type) {
  ClientMetric m;
  m.label = std::move(labels);
  if (type == MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  return m;
}

// A prometheus histogram sample from per-bucket counts (last: +Inf).
ClientMetric histogramOf(std::vector<ClientMetric::Label> labels,
                         const std::array<std::uint64_t, kLatencyBounds.size() + 1>& buckets,
                         std::uint64_t sum_nanos) {
  ClientMetric h;
  h.label = std::move(labels);
  std::uint64_t cumulative = 0;
  for (std::size_t b = 0; b < kLatencyBounds.size(); ++b) {
    cumulative += buckets[b];
    h.histogram.bucket.push_back({cumulative, kLatencyBounds[b]});
  }
  cumulative += buckets[kLatencyBounds.size()];
  h.histogram.bucket.push_back({cumulative, std::numeric_limits<double>::infinity()});
  h.histogram.sample_count = cumulative;
  h.histogram.sample_sum = static_cast<double>(sum_nanos) / 1e9;
  return h;
}

void addStatusFamilies(const std::deque<StatusStats>& list, const char* label,
                       MetricFamily* requests, MetricFamily* duration, MetricFamily* errors) {
  for (const StatusStats& s : list) {
    std::array<std::uint64_t, kMaxStatus> codes{};
    std::array<std::uint64_t, kLatencyBounds.size() + 1> buckets{};
    std::array<std::uint64_t, kUpstreamErrorKinds> errs{};
    std::uint64_t sum_nanos = 0;
    for (int w = 0; w < s.workers(); ++w) {
      const StatusShard& sh = s.shard(w);
      for (int c = 0; c < kMaxStatus; ++c) codes[c] += sh.codes[c].load(std::memory_order_relaxed);
      for (std::size_t b = 0; b < buckets.size(); ++b) {
        buckets[b] += sh.latency.buckets[b].load(std::memory_order_relaxed);
      }
      for (int e = 0; e < kUpstreamErrorKinds; ++e)
        errs[e] += sh.errors[e].load(std::memory_order_relaxed);
      sum_nanos += sh.latency.sum_nanos.load(std::memory_order_relaxed);
    }
    for (int c = 100; c < kMaxStatus; ++c) {
      if (codes[c] == 0) continue;
      requests->metric.push_back(sample({{label, s.name()}, {"code", std::to_string(c)}},
                                        static_cast<double>(codes[c]), MetricType::Counter));
    }
    duration->metric.push_back(histogramOf({{label, s.name()}}, buckets, sum_nanos));
    if (errors != nullptr) {
      for (int e = 0; e < kUpstreamErrorKinds; ++e) {
        errors->metric.push_back(
            sample({{label, s.name()}, {"kind", upstreamErrorName(static_cast<UpstreamError>(e))}},
                   static_cast<double>(errs[e]), MetricType::Counter));
      }
    }
  }
}

// SPEC §9: handshakes on the TLS listener, and each certificate's expiry.
void addTlsFamilies(const TlsHandshakes& h, const ScrapeInput& in, std::vector<MetricFamily>* out) {
  auto handshakes =
      family("sluice_tls_handshakes_total",
             "TLS handshakes on the TLS listener, by result and version.", MetricType::Counter);
  const auto count = [&](const char* result, const char* version,
                         const std::atomic<std::uint64_t>& c) {
    handshakes.metric.push_back(sample({{"result", result}, {"version", version}},
                                       static_cast<double>(c.load()), MetricType::Counter));
  };
  count("ok", "TLSv1.2", h.ok12);
  count("ok", "TLSv1.3", h.ok13);
  count("failed", "", h.failed);
  out->push_back(std::move(handshakes));
  auto not_after =
      family("sluice_tls_certificate_not_after_timestamp_seconds",
             "When each served certificate expires (Unix seconds).", MetricType::Gauge);
  for (const CertificateSample& c : in.certificates) {
    not_after.metric.push_back(sample({{"name", c.name}}, c.not_after, MetricType::Gauge));
  }
  out->push_back(std::move(not_after));
}

// SPEC §10: tunnels open per route and the bytes they carried each way.
void addTunnelFamilies(const std::deque<TunnelStats>& tunnels, std::vector<MetricFamily>* out) {
  auto open =
      family("sluice_tunnels", "Upgraded connections open now, by route.", MetricType::Gauge);
  auto bytes = family("sluice_tunnel_bytes_total",
                      "Bytes carried by tunnels, by route and direction.", MetricType::Counter);
  for (const TunnelStats& t : tunnels) {
    open.metric.push_back(
        sample({{"route", t.route}}, static_cast<double>(t.open.load()), MetricType::Gauge));
    bytes.metric.push_back(sample({{"route", t.route}, {"direction", "upstream"}},
                                  static_cast<double>(t.bytes_upstream.load()),
                                  MetricType::Counter));
    bytes.metric.push_back(sample({{"route", t.route}, {"direction", "downstream"}},
                                  static_cast<double>(t.bytes_downstream.load()),
                                  MetricType::Counter));
  }
  out->push_back(std::move(open));
  out->push_back(std::move(bytes));
}

}  // namespace

void LatencyShard::observe(Nanos d) {
  const double secs = static_cast<double>(d) / 1e9;
  std::size_t b = 0;
  while (b < kLatencyBounds.size() && secs > kLatencyBounds[b]) ++b;
  bump(buckets[b]);
  bump(sum_nanos, d > 0 ? static_cast<std::uint64_t>(d) : 0);
}

const char* upstreamErrorName(UpstreamError e) {
  switch (e) {
    case UpstreamError::kConnect:
      return "connect";
    case UpstreamError::kTimeout:
      return "timeout";
    case UpstreamError::kReset:
      return "reset";
    case UpstreamError::kProtocol:
      return "protocol";
    case UpstreamError::kPoolFull:
      return "pool_full";
    case UpstreamError::kPendingTimeout:
      return "pending_timeout";
    case UpstreamError::kTls:
      return "tls";
  }
  return "unknown";
}

StatusStats::StatusStats(std::string name, int workers)
    : name_(std::move(name)), workers_(workers), shards_(new StatusShard[workers]) {}

void StatusStats::record(int worker, int status, Nanos duration) {
  StatusShard& sh = shards_[worker];
  if (status >= 0 && status < kMaxStatus) bump(sh.codes[static_cast<std::size_t>(status)]);
  sh.latency.observe(duration);
}

void StatusStats::count(int worker, int status) {
  if (status >= 0 && status < kMaxStatus) {
    bump(shards_[worker].codes[static_cast<std::size_t>(status)]);
  }
}

Registry::Registry(int workers, std::string version)
    : workers_(workers), version_(std::move(version)), store_("redis", workers) {}

StatusStats* Registry::find(std::deque<StatusStats>& list, const std::string& name) {
  std::lock_guard lock(mu_);
  for (StatusStats& s : list) {
    if (s.name() == name) return &s;
  }
  list.emplace_back(name, workers_);
  return &list.back();
}

StatusStats* Registry::route(const std::string& name) { return find(routes_, name); }
StatusStats* Registry::upstream(const std::string& name) { return find(upstreams_, name); }

void Registry::reloadSucceeded(double wall_seconds) {
  reload_success_.fetch_add(1);
  last_reload_success_.store(wall_seconds);
}

void Registry::reloadFailed() { reload_failure_.fetch_add(1); }

TunnelStats* Registry::tunnels(const std::string& name) {
  std::lock_guard lock(mu_);
  for (TunnelStats& t : tunnels_) {
    if (t.route == name) return &t;
  }
  tunnels_.emplace_back(name);
  return &tunnels_.back();
}

std::string Registry::render(const ScrapeInput& in) const {
  std::vector<MetricFamily> out;
  std::lock_guard lock(mu_);

  auto requests = family("sluice_requests_total", "Requests answered, by route and status code.",
                         MetricType::Counter);
  auto duration =
      family("sluice_request_duration_seconds",
             "Time from request head to the end of the response, by route.", MetricType::Histogram);
  addStatusFamilies(routes_, "route", &requests, &duration, nullptr);
  out.push_back(std::move(requests));
  out.push_back(std::move(duration));

  auto decisions = family("sluice_ratelimit_decisions_total",
                          "Rate-limit decisions, by limit and outcome.", MetricType::Counter);
  auto keys = family("sluice_ratelimit_keys", "Buckets held now, by limit.", MetricType::Gauge);
  auto swept = family("sluice_ratelimit_swept_total", "Full buckets removed by the sweeper.",
                      MetricType::Counter);
  auto evicted = family("sluice_ratelimit_evicted_total",
                        "Buckets evicted (least recently used) at max_keys.", MetricType::Counter);
  for (const LimitSample& l : in.limits) {
    const std::pair<const char*, std::uint64_t> outcomes[] = {{"allowed", l.allowed},
                                                              {"denied", l.denied},
                                                              {"shadow_denied", l.shadow_denied},
                                                              {"exempt", l.exempt}};
    for (const auto& [name, value] : outcomes) {
      decisions.metric.push_back(sample({{"limit", l.name}, {"decision", name}},
                                        static_cast<double>(value), MetricType::Counter));
    }
    keys.metric.push_back(
        sample({{"limit", l.name}}, static_cast<double>(l.keys), MetricType::Gauge));
    swept.metric.push_back(
        sample({{"limit", l.name}}, static_cast<double>(l.swept), MetricType::Counter));
    evicted.metric.push_back(
        sample({{"limit", l.name}}, static_cast<double>(l.evicted), MetricType::Counter));
  }
  out.push_back(std::move(decisions));
  out.push_back(std::move(keys));
  out.push_back(std::move(swept));
  out.push_back(std::move(evicted));

  auto up_requests =
      family("sluice_upstream_requests_total", "Responses received from upstreams, by status code.",
             MetricType::Counter);
  auto up_duration =
      family("sluice_upstream_duration_seconds", "Time until the upstream's response head arrived.",
             MetricType::Histogram);
  auto up_errors =
      family("sluice_upstream_errors_total", "Upstream failures, by kind.", MetricType::Counter);
  addStatusFamilies(upstreams_, "upstream", &up_requests, &up_duration, &up_errors);
  out.push_back(std::move(up_requests));
  out.push_back(std::move(up_duration));
  out.push_back(std::move(up_errors));

  auto conns = family("sluice_upstream_connections", "Open upstream connections, by state.",
                      MetricType::Gauge);
  auto pending = family("sluice_upstream_pending", "Requests waiting for an upstream connection.",
                        MetricType::Gauge);
  for (const PoolSample& p : in.pools) {
    conns.metric.push_back(sample({{"upstream", p.name}, {"state", "active"}},
                                  static_cast<double>(p.active), MetricType::Gauge));
    conns.metric.push_back(sample({{"upstream", p.name}, {"state", "idle"}},
                                  static_cast<double>(p.idle), MetricType::Gauge));
    pending.metric.push_back(
        sample({{"upstream", p.name}}, static_cast<double>(p.pending), MetricType::Gauge));
  }
  out.push_back(std::move(conns));
  out.push_back(std::move(pending));

  addTlsFamilies(tls_handshakes_, in, &out);
  addTunnelFamilies(tunnels_, &out);

  auto clients = family("sluice_client_connections", "Open client connections.", MetricType::Gauge);
  clients.metric.push_back(
      sample({}, static_cast<double>(in.client_connections), MetricType::Gauge));
  out.push_back(std::move(clients));

  auto reloads = family("sluice_config_reloads_total", "Configuration reloads, by result.",
                        MetricType::Counter);
  reloads.metric.push_back(sample(
      {{"result", "success"}}, static_cast<double>(reload_success_.load()), MetricType::Counter));
  reloads.metric.push_back(sample(
      {{"result", "failure"}}, static_cast<double>(reload_failure_.load()), MetricType::Counter));
  out.push_back(std::move(reloads));
  auto last =
      family("sluice_config_last_reload_success_timestamp_seconds",
             "Wall-clock time of the last successful configuration load.", MetricType::Gauge);
  last.metric.push_back(sample({}, last_reload_success_.load(), MetricType::Gauge));
  out.push_back(std::move(last));

  auto store_requests =
      family("sluice_store_requests_total",
             "Decisions asked of the shared store (Redis), by result.", MetricType::Counter);
  auto store_duration =
      family("sluice_store_duration_seconds", "Time until the shared store answered a decision.",
             MetricType::Histogram);
  auto fallbacks =
      family("sluice_store_fallbacks_total",
             "Decisions made by on_store_error because the store failed.", MetricType::Counter);
  {
    std::array<std::uint64_t, 3> results{};
    std::array<std::uint64_t, kLatencyBounds.size() + 1> buckets{};
    std::uint64_t sum_nanos = 0;
    for (int w = 0; w < store_.workers(); ++w) {
      const StatusShard& sh = store_.shard(w);
      for (std::size_t i = 0; i < results.size(); ++i) results[i] += sh.codes[i].load();
      for (std::size_t b = 0; b < buckets.size(); ++b) buckets[b] += sh.latency.buckets[b].load();
      sum_nanos += sh.latency.sum_nanos.load();
    }
    const char* names[] = {"ok", "error", "timeout"};
    for (std::size_t i = 0; i < results.size(); ++i) {
      store_requests.metric.push_back(
          sample({{"result", names[i]}}, static_cast<double>(results[i]), MetricType::Counter));
    }
    store_duration.metric.push_back(histogramOf({}, buckets, sum_nanos));
  }
  for (const LimitSample& l : in.limits) {
    if (!l.redis) continue;
    fallbacks.metric.push_back(
        sample({{"limit", l.name}}, static_cast<double>(l.fallbacks), MetricType::Counter));
  }
  out.push_back(std::move(store_requests));
  out.push_back(std::move(store_duration));
  out.push_back(std::move(fallbacks));

  auto build =
      family("sluice_build_info", "Build information; the value is always 1.", MetricType::Gauge);
  build.metric.push_back(sample({{"version", version_}}, 1, MetricType::Gauge));
  out.push_back(std::move(build));

  std::ostringstream os;
  prometheus::TextSerializer().Serialize(os, out);
  return os.str();
}

}  // namespace sluice::metrics
