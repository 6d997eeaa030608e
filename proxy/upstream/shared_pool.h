#pragma once
// The cross-worker half of an upstream connection pool (SPEC §5): the count
// of open connections per target (never above max_connections, all workers
// together), round-robin target choice with a 5 s penalty for a target that
// refuses, and the FIFO of requests waiting for a connection slot.
//
// The hot path (a slot is free, or a worker has an idle connection) touches
// only atomics; the waiter queue takes a mutex and is used only when the
// pool is saturated.

#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "proxy/config/config.h"
#include "proxy/tls/context.h"

namespace sluice::upstream {

using Nanos = std::int64_t;
inline constexpr Nanos kRefusedPenalty = 5LL * 1000000000LL;

struct Target {
  config::Address address;
  std::string text;  // address.toString(), for logs
  sockaddr_storage sockaddr{};
  socklen_t sockaddr_len = 0;
  std::atomic<int> open{0};          // connections open now, all workers
  std::atomic<Nanos> down_until{0};  // skipped by round-robin until then
};

// A request waiting for a slot: which worker and which request there.
struct Waiter {
  int worker = 0;
  std::uint64_t token = 0;
};

class SharedPool {
 public:
  // Resolves targets; returns nullptr and sets `error` if one cannot be.
  static std::shared_ptr<SharedPool> create(const config::UpstreamConfig& cfg, std::string* error);

  const config::UpstreamConfig& config() const { return cfg_; }
  // With `tls: true`: the client context connections handshake with.
  const tls::ClientTls* tls() const { return tls_.get(); }
  const std::string& name() const { return cfg_.name; }
  std::size_t targetCount() const { return targets_.size(); }
  Target& target(std::size_t i) { return *targets_[i]; }

  // Reserves a connection slot on the next usable target (round-robin,
  // skipping targets marked down unless all are). Returns the target index.
  std::optional<std::size_t> reserveSlot(Nanos now);
  // Gives back a slot reserved with reserveSlot (the connection closed).
  void releaseSlot(std::size_t target);
  // Marks a target as refusing connections for kRefusedPenalty.
  void markDown(std::size_t target, Nanos now);

  // Adds a waiter if fewer than max_pending wait; false means "queue full".
  bool enqueue(const Waiter& w);
  // Removes a waiter that gave up (timeout, client gone); false if it was
  // already handed a slot.
  bool cancel(const Waiter& w);
  // Pops the oldest waiter, if any.
  std::optional<Waiter> popWaiter();
  // Cheap check used on the hot path before popWaiter.
  bool hasWaiters() const { return waiting_.load(std::memory_order_acquire) > 0; }
  std::int64_t pending() const { return waiting_.load(std::memory_order_relaxed); }
  // Idle pooled connections, all workers (for the connections gauge).
  std::atomic<std::int64_t> idle{0};
  // Open connections, all targets.
  std::int64_t open() const;

 private:
  std::shared_ptr<const tls::ClientTls> tls_;
  explicit SharedPool(const config::UpstreamConfig& cfg) : cfg_(cfg) {}

  config::UpstreamConfig cfg_;
  std::vector<std::unique_ptr<Target>> targets_;
  std::atomic<std::uint32_t> rr_{0};
  std::mutex mu_;
  std::deque<Waiter> queue_;
  std::atomic<std::int64_t> waiting_{0};
};

}  // namespace sluice::upstream
