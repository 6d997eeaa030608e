#pragma once
// The per-worker half of the upstream pools (SPEC §5): this worker's idle
// connections (LIFO per pool), its requests waiting for a slot, and the
// hand-over of slots and connections between requests and workers. Sockets
// stay on the worker that opened them; a slot for a waiter on another worker
// travels as a message (PoolPeers::postSlot).

#include <event2/event.h>

#include <cstdint>
#include <memory>
#include <unordered_map>

#include "proxy/upstream/upstream_conn.h"

namespace sluice::upstream {

// A request waiting for a connection of a saturated pool.
class PoolWaiter {
 public:
  virtual ~PoolWaiter() = default;
  // A slot was reserved for it on `target`: open a connection.
  virtual void onSlot(std::size_t target) noexcept = 0;
  // An idle connection was handed to it.
  virtual void onIdleConn(UpstreamConn* uc) noexcept = 0;
};

// What a request needs of the pool (the real one is LocalPool; tests fake it).
class ConnectionSource {
 public:
  virtual ~ConnectionSource() = default;
  enum class Got { kConn, kSlot, kQueued, kFull };
  struct Acquired {
    Got got = Got::kFull;
    UpstreamConn* conn = nullptr;  // kConn: an idle connection
    std::size_t target = 0;        // kSlot: reserved on this target
    std::uint64_t token = 0;       // kQueued: for cancel()
  };
  // An idle connection, else a reserved slot, else a place in the queue
  // (`waiter` is told later), else kFull (max_pending reached).
  virtual Acquired acquire(const std::shared_ptr<SharedPool>& pool, PoolWaiter* waiter) = 0;
  // Opens a connection on a reserved slot for `user`; null when it failed at
  // once (the slot is passed on; a refusing target is marked down).
  virtual UpstreamConn* open(const std::shared_ptr<SharedPool>& pool, std::size_t target,
                             UpstreamUser* user) = 0;
  // A queued request gave up (timeout, client gone).
  virtual void cancel(const std::shared_ptr<SharedPool>& pool, std::uint64_t token) = 0;
  // A request is done with `uc`: keep it for reuse (idle or the next waiter)
  // or close it and pass its slot on.
  virtual void release(UpstreamConn* uc, bool reusable) = 0;
  // `uc` becomes a tunnel (SPEC §10): it leaves the pool, its slot is passed
  // on, and its transport is handed over (the rest of `uc` is freed).
  virtual std::unique_ptr<transport::Transport> detach(UpstreamConn* uc) = 0;
  virtual Nanos now() = 0;
};

// What a worker's pool needs of its worker and the other workers.
class PoolPeers {
 public:
  virtual ~PoolPeers() = default;
  virtual void eventStarted() noexcept = 0;  // a callback began (cached time is stale)
  virtual Nanos now() noexcept = 0;
  // Hands a slot of `pool` on `target` to waiter `token` of worker `worker`.
  virtual void postSlot(int worker, std::shared_ptr<SharedPool> pool, std::size_t target,
                        std::uint64_t token) = 0;
  // Asks every other worker to close one idle connection of `pool`.
  virtual void postReclaim(const std::shared_ptr<SharedPool>& pool) = 0;
};

class LocalPool final : public ConnectionSource {
 public:
  LocalPool(int worker, event_base* base, PoolPeers& peers)
      : worker_(worker), base_(base), peers_(peers) {}
  ~LocalPool() override;
  LocalPool(const LocalPool&) = delete;
  LocalPool& operator=(const LocalPool&) = delete;

  Acquired acquire(const std::shared_ptr<SharedPool>& pool, PoolWaiter* waiter) override;
  UpstreamConn* open(const std::shared_ptr<SharedPool>& pool, std::size_t target,
                     UpstreamUser* user) override;
  void cancel(const std::shared_ptr<SharedPool>& pool, std::uint64_t token) override;
  void release(UpstreamConn* uc, bool reusable) override;
  std::unique_ptr<transport::Transport> detach(UpstreamConn* uc) override;
  Nanos now() override { return peers_.now(); }

  // A slot message from another worker (or back from a waiter that left).
  void onSlotMessage(const std::shared_ptr<SharedPool>& pool, std::size_t target,
                     std::uint64_t token);
  // Another worker needs a slot of `pool`: close one idle connection.
  void reclaimOne(SharedPool* pool);
  // Closes idle connections past their idle_timeout (the worker's tick).
  void expireIdle(Nanos now);
  // Closes every idle connection and gives its slot back (worker teardown:
  // no waiter is handed anything).
  void closeAll();
  // The worker stops: connections are closed instead of kept.
  void stopping() { stopping_ = true; }

  // UpstreamConn callbacks.
  void eventStarted() noexcept { peers_.eventStarted(); }
  void idleClosed(UpstreamConn* uc) noexcept;

 private:
  UpstreamConn* takeIdle(SharedPool* pool);
  void keepIdle(UpstreamConn* uc);
  void closeConn(UpstreamConn* uc);
  // Gives a slot to the oldest waiter of the pool, or frees it.
  void passSlot(const std::shared_ptr<SharedPool>& pool, std::size_t target);
  PoolWaiter* takeWaiter(std::uint64_t token);

  int worker_;
  event_base* base_;
  PoolPeers& peers_;
  bool stopping_ = false;
  std::unordered_map<SharedPool*, UpstreamConn*> idle_;  // per pool, LIFO
  std::unordered_map<std::uint64_t, PoolWaiter*> waiters_;
  std::uint64_t next_token_ = 1;
};

}  // namespace sluice::upstream
