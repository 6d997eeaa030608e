// A worker's half of the upstream pool: idle connections, waiters and the
// hand-over of slots, with fake peers (other workers, the time) and real
// connections to a loopback listener that never answers.

#include "proxy/upstream/local_pool.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace sluice::upstream {
namespace {

constexpr Nanos kSecond = 1000000000LL;
constexpr Nanos kIdleTimeout = 10 * kSecond;

// A listening socket on 127.0.0.1, port chosen by the kernel. Connections
// complete into its backlog; nothing is ever read or written.
class Listener {
 public:
  Listener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), len) != 0 || ::listen(fd_, 16) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      ADD_FAILURE() << "cannot listen on 127.0.0.1";
    }
    port_ = ntohs(a.sin_port);
  }
  ~Listener() { ::close(fd_); }
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  std::uint16_t port() const { return port_; }
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

// The worker and the other workers, as far as the pool sees them.
class FakePeers final : public PoolPeers {
 public:
  struct Posted {
    int worker;
    SharedPool* pool;
    std::size_t target;
    std::uint64_t token;
  };
  void eventStarted() noexcept override { ++events; }
  Nanos now() noexcept override { return time; }
  void postSlot(int worker, std::shared_ptr<SharedPool> pool, std::size_t target,
                std::uint64_t token) override {
    posted.push_back({worker, pool.get(), target, token});
  }
  void postReclaim(const std::shared_ptr<SharedPool>& pool) override {
    reclaims.push_back(pool.get());
  }

  Nanos time = 0;
  int events = 0;
  std::vector<Posted> posted;
  std::vector<SharedPool*> reclaims;
};

class FakeWaiter final : public PoolWaiter {
 public:
  void onSlot(std::size_t target) noexcept override { slots.push_back(target); }
  void onIdleConn(UpstreamConn* uc) noexcept override { conns.push_back(uc); }
  bool handedNothing() const { return slots.empty() && conns.empty(); }

  std::vector<std::size_t> slots;
  std::vector<UpstreamConn*> conns;
};

class NoUser final : public UpstreamUser {
 public:
  void onUpstreamReady(bool, bool) noexcept override {}
};

struct BaseFree {
  void operator()(event_base* b) const { event_base_free(b); }
};

class LocalPoolTest : public ::testing::Test {
 protected:
  void TearDown() override {
    for (UpstreamConn* uc : held_) delete uc;
    held_.clear();
  }

  // A pool of `targets` loopback targets at `max_connections` each.
  std::shared_ptr<SharedPool> makePool(int max_connections, int max_pending = 10, int targets = 1) {
    config::UpstreamConfig cfg;
    cfg.name = "api";
    for (int i = 0; i < targets; ++i) cfg.targets.push_back({"127.0.0.1", listener_.port(), false});
    cfg.max_connections = max_connections;
    cfg.max_pending = max_pending;
    cfg.idle_timeout = config::Duration{kIdleTimeout};
    std::string error;
    auto p = SharedPool::create(cfg, &error);
    EXPECT_NE(p, nullptr) << error;
    return p;
  }

  // Acquires a slot on `local` and opens a connection on it; the test holds it.
  UpstreamConn* openOne(LocalPool& local, const std::shared_ptr<SharedPool>& pool) {
    const auto a = local.acquire(pool, &unused_waiter_);
    EXPECT_EQ(a.got, ConnectionSource::Got::kSlot);
    if (a.got != ConnectionSource::Got::kSlot) return nullptr;
    return hold(local.open(pool, a.target, &user_));
  }
  UpstreamConn* hold(UpstreamConn* uc) {
    if (uc != nullptr) held_.insert(uc);
    return uc;
  }
  // The request using `uc` is done with it.
  void release(LocalPool& local, UpstreamConn* uc, bool reusable) {
    held_.erase(uc);
    local.release(uc, reusable);
  }
  // Takes the connection `waiter` was handed (the test holds it from now on).
  UpstreamConn* takeHanded(FakeWaiter& waiter) {
    EXPECT_EQ(waiter.conns.size(), 1u);
    return waiter.conns.empty() ? nullptr : hold(waiter.conns.back());
  }

  Listener listener_;
  std::unique_ptr<event_base, BaseFree> base_{event_base_new()};
  FakePeers peers_;
  NoUser user_;
  FakeWaiter unused_waiter_;
  // Connections handed to the test and not given back (freed in TearDown).
  std::set<UpstreamConn*> held_;
  // Declared after base_: destroyed (closing idle connections) before it.
  std::shared_ptr<SharedPool> pool_ = makePool(2);
  LocalPool local_{0, base_.get(), peers_};
  LocalPool other_{1, base_.get(), peers_};  // another worker
};

using Got = ConnectionSource::Got;

// ---- one worker ------------------------------------------------------------------

TEST_F(LocalPoolTest, FirstRequestGetsASlotAndOpensAConnectionOnIt) {
  const auto a = local_.acquire(pool_, &unused_waiter_);
  ASSERT_EQ(a.got, Got::kSlot);
  EXPECT_EQ(a.target, 0u);
  EXPECT_EQ(pool_->open(), 1);
  UpstreamConn* uc = hold(local_.open(pool_, a.target, &user_));
  ASSERT_NE(uc, nullptr);
  EXPECT_EQ(uc->user, &user_);
  EXPECT_EQ(uc->home, &local_);
  EXPECT_FALSE(uc->connected);
  EXPECT_EQ(pool_->open(), 1);  // the connection uses the slot it was opened on
}

TEST_F(LocalPoolTest, ReleasedConnectionsAreReusedLastInFirstOut) {
  UpstreamConn* a = openOne(local_, pool_);
  UpstreamConn* b = openOne(local_, pool_);
  release(local_, a, true);
  release(local_, b, true);
  EXPECT_EQ(pool_->idle.load(), 2);
  EXPECT_EQ(pool_->open(), 2);
  const auto first = local_.acquire(pool_, &unused_waiter_);
  const auto second = local_.acquire(pool_, &unused_waiter_);
  ASSERT_EQ(first.got, Got::kConn);
  ASSERT_EQ(second.got, Got::kConn);
  EXPECT_EQ(hold(first.conn), b);
  EXPECT_EQ(hold(second.conn), a);
  EXPECT_EQ(first.conn->user, nullptr);  // the new request sets itself
  EXPECT_EQ(pool_->idle.load(), 0);
  EXPECT_EQ(pool_->open(), 2);
}

TEST_F(LocalPoolTest, AtMaxConnectionsARequestWaitsAndOtherWorkersAreAskedToReclaim) {
  openOne(local_, pool_);
  openOne(local_, pool_);
  FakeWaiter w;
  const auto a = local_.acquire(pool_, &w);
  EXPECT_EQ(a.got, Got::kQueued);
  EXPECT_NE(a.token, 0u);
  EXPECT_EQ(pool_->pending(), 1);
  EXPECT_EQ(peers_.reclaims, std::vector<SharedPool*>{pool_.get()});
  EXPECT_TRUE(w.handedNothing());
}

TEST_F(LocalPoolTest, ReleasedConnectionGoesToTheOldestWaiter) {
  UpstreamConn* a = openOne(local_, pool_);
  openOne(local_, pool_);
  FakeWaiter first, second;
  ASSERT_EQ(local_.acquire(pool_, &first).got, Got::kQueued);
  ASSERT_EQ(local_.acquire(pool_, &second).got, Got::kQueued);
  release(local_, a, true);
  EXPECT_EQ(takeHanded(first), a);
  EXPECT_TRUE(second.handedNothing());
  EXPECT_EQ(pool_->idle.load(), 0);
  EXPECT_EQ(pool_->pending(), 1);
  EXPECT_EQ(pool_->open(), 2);
}

TEST_F(LocalPoolTest, BeyondMaxPendingTheRequestIsRefused) {
  auto pool = makePool(1, 1);
  UpstreamConn* a = openOne(local_, pool);
  FakeWaiter queued, refused;
  ASSERT_EQ(local_.acquire(pool, &queued).got, Got::kQueued);
  EXPECT_EQ(local_.acquire(pool, &refused).got, Got::kFull);
  EXPECT_EQ(pool->pending(), 1);
  release(local_, a, true);
  EXPECT_EQ(takeHanded(queued), a);
  EXPECT_TRUE(refused.handedNothing());
}

TEST_F(LocalPoolTest, WaiterThatGaveUpIsHandedNothing) {
  UpstreamConn* a = openOne(local_, pool_);
  openOne(local_, pool_);
  FakeWaiter w;
  const auto q = local_.acquire(pool_, &w);
  ASSERT_EQ(q.got, Got::kQueued);
  local_.cancel(pool_, q.token);
  EXPECT_EQ(pool_->pending(), 0);
  release(local_, a, true);
  EXPECT_TRUE(w.handedNothing());
  EXPECT_EQ(pool_->idle.load(), 1);  // kept for the next request instead
}

TEST_F(LocalPoolTest, ClosedConnectionPassesItsSlotToTheOldestWaiter) {
  UpstreamConn* a = openOne(local_, pool_);
  openOne(local_, pool_);
  FakeWaiter w;
  ASSERT_EQ(local_.acquire(pool_, &w).got, Got::kQueued);
  release(local_, a, false);
  EXPECT_EQ(w.slots, std::vector<std::size_t>{0});
  EXPECT_TRUE(w.conns.empty());
  EXPECT_EQ(pool_->open(), 2);  // the slot is the waiter's now
  EXPECT_EQ(pool_->idle.load(), 0);
}

TEST_F(LocalPoolTest, ClosedConnectionWithNobodyWaitingFreesItsSlot) {
  UpstreamConn* a = openOne(local_, pool_);
  release(local_, a, false);
  EXPECT_EQ(pool_->open(), 0);
  EXPECT_EQ(pool_->idle.load(), 0);
  EXPECT_EQ(local_.acquire(pool_, &unused_waiter_).got, Got::kSlot);
}

TEST_F(LocalPoolTest, StoppingWorkerClosesConnectionsInsteadOfKeepingThem) {
  UpstreamConn* a = openOne(local_, pool_);
  local_.stopping();
  release(local_, a, true);
  EXPECT_EQ(pool_->idle.load(), 0);
  EXPECT_EQ(pool_->open(), 0);
}

TEST_F(LocalPoolTest, ExpireIdleClosesOnlyConnectionsPastIdleTimeout) {
  UpstreamConn* a = openOne(local_, pool_);
  UpstreamConn* b = openOne(local_, pool_);
  peers_.time = 0;
  release(local_, a, true);  // idle until 10s
  peers_.time = 5 * kSecond;
  release(local_, b, true);  // idle until 15s
  local_.expireIdle(kIdleTimeout - 1);
  EXPECT_EQ(pool_->idle.load(), 2);
  local_.expireIdle(kIdleTimeout);
  EXPECT_EQ(pool_->idle.load(), 1);
  EXPECT_EQ(pool_->open(), 1);
  const auto left = local_.acquire(pool_, &unused_waiter_);
  ASSERT_EQ(left.got, Got::kConn);
  EXPECT_EQ(hold(left.conn), b);
}

TEST_F(LocalPoolTest, ReclaimOneClosesTheMostRecentIdleConnection) {
  UpstreamConn* a = openOne(local_, pool_);
  UpstreamConn* b = openOne(local_, pool_);
  release(local_, a, true);
  release(local_, b, true);
  local_.reclaimOne(pool_.get());
  EXPECT_EQ(pool_->idle.load(), 1);
  EXPECT_EQ(pool_->open(), 1);
  const auto left = local_.acquire(pool_, &unused_waiter_);
  ASSERT_EQ(left.got, Got::kConn);
  EXPECT_EQ(hold(left.conn), a);
}

TEST_F(LocalPoolTest, ReclaimOneWithNothingIdleClosesNothing) {
  openOne(local_, pool_);
  local_.reclaimOne(pool_.get());
  EXPECT_EQ(pool_->open(), 1);
}

TEST_F(LocalPoolTest, CloseAllClosesIdleConnectionsAndFreesTheirSlots) {
  UpstreamConn* a = openOne(local_, pool_);
  UpstreamConn* b = openOne(local_, pool_);
  release(local_, a, true);
  release(local_, b, true);
  local_.closeAll();
  EXPECT_EQ(pool_->open(), 0);
  EXPECT_EQ(local_.acquire(pool_, &unused_waiter_).got, Got::kSlot);
}

// ---- two workers -------------------------------------------------------------------

TEST_F(LocalPoolTest, IdleConnectionStaysWithTheWorkerThatOpenedIt) {
  UpstreamConn* a = openOne(local_, pool_);
  release(local_, a, true);
  EXPECT_EQ(other_.acquire(pool_, &unused_waiter_).got, Got::kSlot);
  EXPECT_EQ(pool_->idle.load(), 1);
}

TEST_F(LocalPoolTest, ConnectionForAWaiterOnAnotherWorkerIsClosedAndItsSlotPosted) {
  auto pool = makePool(1);
  UpstreamConn* a = openOne(local_, pool);
  FakeWaiter w;
  const auto q = other_.acquire(pool, &w);
  ASSERT_EQ(q.got, Got::kQueued);
  release(local_, a, true);
  ASSERT_EQ(peers_.posted.size(), 1u);
  EXPECT_EQ(peers_.posted[0].worker, 1);
  EXPECT_EQ(peers_.posted[0].pool, pool.get());
  EXPECT_EQ(peers_.posted[0].target, 0u);
  EXPECT_EQ(peers_.posted[0].token, q.token);
  EXPECT_EQ(pool->idle.load(), 0);
  EXPECT_EQ(pool->open(), 1);  // the slot travels with the message
  other_.onSlotMessage(pool, 0, q.token);
  EXPECT_EQ(w.slots, std::vector<std::size_t>{0});
}

TEST_F(LocalPoolTest, ReclaimedSlotIsPostedToTheWaiterOnAnotherWorker) {
  auto pool = makePool(1);
  release(local_, openOne(local_, pool), true);
  FakeWaiter w;
  const auto q = other_.acquire(pool, &w);
  ASSERT_EQ(q.got, Got::kQueued);
  EXPECT_EQ(peers_.reclaims, std::vector<SharedPool*>{pool.get()});
  local_.reclaimOne(pool.get());
  ASSERT_EQ(peers_.posted.size(), 1u);
  EXPECT_EQ(peers_.posted[0].worker, 1);
  EXPECT_EQ(peers_.posted[0].token, q.token);
  EXPECT_EQ(pool->idle.load(), 0);
  EXPECT_EQ(pool->open(), 1);
}

TEST_F(LocalPoolTest, SlotOfAnExpiredConnectionIsPostedToAWaiterOnAnotherWorker) {
  auto pool = makePool(1);
  release(local_, openOne(local_, pool), true);
  FakeWaiter w;
  const auto q = other_.acquire(pool, &w);
  ASSERT_EQ(q.got, Got::kQueued);
  local_.expireIdle(kIdleTimeout);
  ASSERT_EQ(peers_.posted.size(), 1u);
  EXPECT_EQ(peers_.posted[0].worker, 1);
  EXPECT_EQ(peers_.posted[0].token, q.token);
  EXPECT_EQ(pool->open(), 1);
}

TEST_F(LocalPoolTest, SlotArrivingForAWaiterThatLeftIsPassedOn) {
  auto pool = makePool(1);
  UpstreamConn* a = openOne(local_, pool);
  FakeWaiter w;
  const auto q = other_.acquire(pool, &w);
  ASSERT_EQ(q.got, Got::kQueued);
  release(local_, a, false);  // the slot is posted to worker 1 ...
  ASSERT_EQ(peers_.posted.size(), 1u);
  other_.cancel(pool, q.token);  // ... whose request gives up before it arrives
  other_.onSlotMessage(pool, 0, q.token);
  EXPECT_TRUE(w.handedNothing());
  EXPECT_EQ(pool->open(), 0);
}

// ---- the event loop ------------------------------------------------------------------

TEST_F(LocalPoolTest, IdleConnectionTheServerClosesIsDroppedAndItsSlotFreed) {
  release(local_, openOne(local_, pool_), true);
  ASSERT_EQ(pool_->idle.load(), 1);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  int server_side = -1;
  while (server_side < 0 && std::chrono::steady_clock::now() < deadline) {
    server_side = ::accept4(listener_.fd(), nullptr, nullptr, SOCK_CLOEXEC);
  }
  ASSERT_GE(server_side, 0) << "the connection never reached the listener";
  ::close(server_side);
  while (pool_->open() != 0 && std::chrono::steady_clock::now() < deadline) {
    event_base_loop(base_.get(), EVLOOP_ONCE | EVLOOP_NONBLOCK);  // one pass
  }
  EXPECT_EQ(pool_->open(), 0);
  EXPECT_EQ(pool_->idle.load(), 0);
  EXPECT_GE(peers_.events, 1);  // the worker heard a callback began
}

// closeAll() uncounts the idle connections it closes, as expireIdle,
// reclaimOne and idleClosed do (the idle-connections gauge).
TEST_F(LocalPoolTest, CloseAllLeavesNoIdleConnectionCounted) {
  release(local_, openOne(local_, pool_), true);
  local_.closeAll();
  EXPECT_EQ(pool_->idle.load(), 0);
}

}  // namespace
}  // namespace sluice::upstream
