#pragma once
// One event-loop thread: its own event_base, its own SO_REUSEPORT listener,
// its client connections, its idle upstream connections and a coarse tick
// that enforces every timeout (no libevent timer per read).

#include <event2/event.h>
#include <event2/listener.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "proxy/event/clock.h"
#include "proxy/exchange/runtime.h"
#include "proxy/transport/transport.h"
#include "proxy/upstream/local_pool.h"

namespace sluice::server {

class Http1Session;
class Worker;

// State shared by all workers of the process.
struct ServerShared {
  explicit ServerShared(const event::Clock& c) : clock(c) {}
  const event::Clock& clock;
  std::atomic<std::int64_t> client_connections{0};
  std::atomic<std::int64_t> max_connections{10000};
  std::atomic<bool> draining{false};
  metrics::Registry* metrics = nullptr;
  // Called on each worker's thread as it stops (closes per-worker clients).
  std::function<void(int)> on_worker_stop;
  std::vector<Worker*> workers;
};

// The client-facing listeners of a worker (SPEC §9: cleartext and TLS).
enum class ListenerKind : int { kPlain = 0, kTls = 1 };
inline constexpr int kListenerKinds = 2;

struct InboxMessage {
  enum class Kind {
    kSlot,
    kReclaimIdle,
    kRuntime,
    kDrain,
    kStop,
    kSwapListener,
    kRun
  } kind = Kind::kStop;
  std::shared_ptr<upstream::SharedPool> pool;
  std::size_t target = 0;
  std::uint64_t token = 0;
  std::shared_ptr<const exchange::Runtime> runtime;
  evconnlistener* listener = nullptr;  // kSwapListener: the new listener (null: none)
  ListenerKind listener_kind = ListenerKind::kPlain;
  std::function<void(Worker&)> run;  // kRun: runs on the worker's thread

  static InboxMessage of(Kind k, std::shared_ptr<upstream::SharedPool> pool = nullptr,
                         std::size_t target = 0, std::uint64_t token = 0) {
    InboxMessage m;
    m.kind = k;
    m.pool = std::move(pool);
    m.target = target;
    m.token = token;
    return m;
  }
};

class Worker final : public upstream::PoolPeers {
 public:
  Worker(int id, ServerShared& shared, std::shared_ptr<const exchange::Runtime> runtime);
  ~Worker() override;
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Binds this worker's listener (SO_REUSEPORT). Returns the bound port or
  // -1 and an error message.
  int listen(const config::Address& addr, ListenerKind kind, std::string* error);
  // Reload with a changed `listen`: binds the new address now (from the
  // control thread) and has the loop close the old listener afterwards, so
  // no connection is refused in between. Returns the port or -1.
  int rebind(const config::Address& addr, ListenerKind kind, std::string* error);
  // Reload without the listener of `kind`: the loop closes it.
  void unbind(ListenerKind kind);
  void start();  // runs the loop on a new thread
  void join();
  // Thread-safe: queue a message for this worker's loop.
  void post(InboxMessage msg);

  int id() const { return id_; }
  event_base* base() const { return base_; }
  ServerShared& shared() { return shared_; }
  const std::shared_ptr<const exchange::Runtime>& runtime() const { return runtime_; }
  // The time of the current event: read once per callback, not per use
  // (a request reads it several times; timeouts are 50 ms coarse anyway).
  event::Nanos now() noexcept override {
    if (!now_valid_) {
      now_cache_ = shared_.clock.now();
      now_valid_ = true;
    }
    return now_cache_;
  }
  // Called when a libevent callback starts: the cached time is stale.
  void newEvent() { now_valid_ = false; }

  // Buffers for client connections come from a per-worker free list.
  std::unique_ptr<char[]> takeBuffer();
  void giveBuffer(std::unique_ptr<char[]> b, std::uint32_t size);
  std::uint32_t clientBufferSize() const { return client_buf_size_; }

  // This worker's half of the upstream pools.
  upstream::LocalPool& pool() { return pool_; }

  // upstream::PoolPeers
  void eventStarted() noexcept override { newEvent(); }
  void postSlot(int worker, std::shared_ptr<upstream::SharedPool> pool, std::size_t target,
                std::uint64_t token) override;
  void postReclaim(const std::shared_ptr<upstream::SharedPool>& pool) override;

  // Access-log lines of this worker, handed to the writer on the tick.
  std::string& accessBuffer() { return access_buf_; }
  void flushAccessLog(bool force);
  // A fresh request id: 128 random bits as 32 hex digits.
  void newRequestId(std::string* out);

  void addConn(Http1Session* c);
  void removeConn(Http1Session* c);
  // `c` became a tunnel: still open and counted, but off the tick's walk.
  void parkTunnel(Http1Session* c);
  void retire(Http1Session* c);  // freed after the current callback

 private:
  evconnlistener* bindListener(const config::Address& addr, std::string* error, int* port);
  static void onAccept(evconnlistener* l, evutil_socket_t fd, sockaddr* sa, int len,
                       void* arg) noexcept;
  static void onAcceptError(evconnlistener* l, void* arg) noexcept;
  static void onTick(evutil_socket_t, short, void* arg) noexcept;
  static void onInbox(evutil_socket_t, short, void* arg) noexcept;
  static void onReap(evutil_socket_t, short, void* arg) noexcept;
  void tick();
  void drainInbox();
  void handle(InboxMessage& m);
  void pauseListeners();
  void closeListeners();
  // The transport for an accepted socket: TLS from the TLS listener.
  std::unique_ptr<transport::Transport> transportFor(const evconnlistener* l, int fd);

  int id_;
  ServerShared& shared_;
  std::shared_ptr<const exchange::Runtime> runtime_;
  event_base* base_ = nullptr;
  std::array<evconnlistener*, kListenerKinds> listeners_{};
  bool listener_paused_ = false;
  ::event* tick_ev_ = nullptr;
  ::event* inbox_ev_ = nullptr;
  ::event* reap_ev_ = nullptr;
  std::thread thread_;
  std::mutex inbox_mu_;
  std::vector<InboxMessage> inbox_;
  std::uint32_t client_buf_size_ = 0;
  std::vector<std::unique_ptr<char[]>> free_buffers_;
  Http1Session* conns_ = nullptr;    // intrusive list of live connections
  Http1Session* tunnels_ = nullptr;  // ... and of those that are tunnels (not ticked)
  std::vector<Http1Session*> graveyard_;
  upstream::LocalPool pool_;
  bool stopping_ = false;
  bool now_valid_ = false;
  event::Nanos now_cache_ = 0;
  std::string access_buf_;
  std::uint64_t rng_[2] = {0, 0};
};

}  // namespace sluice::server
