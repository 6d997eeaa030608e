#pragma once
// Metric storage for the hot path and rendering for /metrics (SPEC §8).
//
// Each worker writes only its own shard (single writer: relaxed load+store,
// no locked instruction, no shared cache line); a scrape sums the shards and
// hands prometheus-cpp's data model to its TextSerializer. Families and
// children are created on the control plane (start-up, reload), never per
// request.

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace sluice::metrics {

using Nanos = std::int64_t;

// Latency buckets, 0.5 ms to 10 s (upper bounds in seconds).
inline constexpr std::array<double, 14> kLatencyBounds = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
inline constexpr int kMaxStatus = 600;

// One writer per shard, so increments need no atomic read-modify-write.
inline void bump(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) {
  c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

struct alignas(64) LatencyShard {
  std::array<std::atomic<std::uint64_t>, kLatencyBounds.size() + 1> buckets{};  // last: +Inf
  std::atomic<std::uint64_t> sum_nanos{0};
  void observe(Nanos d);
};

enum class UpstreamError {
  kConnect,
  kTimeout,
  kReset,
  kProtocol,
  kPoolFull,
  kPendingTimeout,
  kTls
};
inline constexpr int kUpstreamErrorKinds = 7;
const char* upstreamErrorName(UpstreamError e);

struct alignas(64) StatusShard {
  std::array<std::atomic<std::uint64_t>, kMaxStatus> codes{};
  LatencyShard latency;
  std::array<std::atomic<std::uint64_t>, kUpstreamErrorKinds> errors{};
};

// Per route (requests, duration) or per upstream (requests, duration until
// the response head, errors): one shard per worker.
class StatusStats {
 public:
  StatusStats(std::string name, int workers);
  const std::string& name() const { return name_; }
  // Counts one answer with `status` that took `duration`.
  void record(int worker, int status, Nanos duration);
  void observe(int worker, Nanos duration) { shards_[worker].latency.observe(duration); }
  void count(int worker, int status);
  void error(int worker, UpstreamError e) {
    bump(shards_[worker].errors[static_cast<std::size_t>(e)]);
  }
  int workers() const { return workers_; }
  const StatusShard& shard(int w) const { return shards_[w]; }

 private:
  std::string name_;
  int workers_;
  std::unique_ptr<StatusShard[]> shards_;
};

struct LimitSample {
  std::string name;
  std::uint64_t allowed = 0, denied = 0, shadow_denied = 0, exempt = 0;
  std::int64_t keys = 0;
  std::uint64_t swept = 0, evicted = 0;
  std::uint64_t fallbacks = 0;  // store errors handled by on_store_error
  bool redis = false;
};

// Shared-store decisions: results (ok/error/timeout) and latency, per worker.
enum class StoreResult { kOk = 0, kError = 1, kTimeout = 2 };

struct PoolSample {
  std::string name;
  std::int64_t active = 0, idle = 0, pending = 0;
};

// Tunnels of one route (SPEC §10): open now, bytes each way.
struct TunnelStats {
  explicit TunnelStats(std::string route_name) : route(std::move(route_name)) {}
  std::string route;
  std::atomic<std::int64_t> open{0};
  std::atomic<std::uint64_t> bytes_upstream{0};
  std::atomic<std::uint64_t> bytes_downstream{0};
};

// TLS handshakes on the TLS listener (SPEC §9), counted once per connection.
struct TlsHandshakes {
  std::atomic<std::uint64_t> ok12{0};
  std::atomic<std::uint64_t> ok13{0};
  std::atomic<std::uint64_t> failed{0};
};

struct CertificateSample {
  std::string name;  // the certificate's first DNS name
  double not_after = 0;
};

// Values read at scrape time from the live runtime.
struct ScrapeInput {
  std::vector<LimitSample> limits;
  std::vector<PoolSample> pools;
  std::int64_t client_connections = 0;
  std::vector<CertificateSample> certificates;
};

class Registry {
 public:
  Registry(int workers, std::string version);
  // Stats for a route / upstream name; created once, the pointer stays valid.
  StatusStats* route(const std::string& name);
  StatusStats* upstream(const std::string& name);
  // Redis decisions: status slots 0/1/2 hold ok/error/timeout.
  StatusStats* store() { return &store_; }
  TlsHandshakes* tlsHandshakes() { return &tls_handshakes_; }
  // The tunnel counters of route `name`; created once, the pointer stays valid.
  TunnelStats* tunnels(const std::string& name);
  // The first load at start-up: sets the timestamp, counts no reload.
  void configLoaded(double wall_seconds) { last_reload_success_.store(wall_seconds); }
  void reloadSucceeded(double wall_seconds);
  void reloadFailed();
  // Prometheus text exposition 0.0.4 of everything.
  std::string render(const ScrapeInput& in) const;

 private:
  StatusStats* find(std::deque<StatusStats>& list, const std::string& name);

  int workers_;
  std::string version_;
  mutable std::mutex mu_;  // control plane only: creation and scrape
  std::deque<StatusStats> routes_;
  std::deque<StatusStats> upstreams_;
  StatusStats store_;
  std::atomic<std::uint64_t> reload_success_{0};
  std::atomic<std::uint64_t> reload_failure_{0};
  std::atomic<double> last_reload_success_{0};
  TlsHandshakes tls_handshakes_;
  std::deque<TunnelStats> tunnels_;
};

}  // namespace sluice::metrics
