#pragma once
// Token buckets shared by all replicas, kept in Redis (scale-out issue).
//
// One server-side script decides every Redis-stored limit of a request in
// one round trip, atomically, with the local buckets' semantics (GCRA; a
// denied request writes nothing; time from the Redis server's TIME, not from
// the replicas' clocks; a key expires once its bucket would be full).
//
// Each worker has its own hiredis async connections on its own event_base;
// a decision is answered exactly once: with Redis's reply, or with an error
// or a timeout after `redis.timeout`, whichever comes first.

#include <event2/event.h>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "proxy/config/config.h"
#include "proxy/event/clock.h"

struct redisAsyncContext;

namespace sluice::store {

using Nanos = std::int64_t;

struct KeyRequest {
  std::string key;           // full Redis key (prefix included)
  std::int64_t interval_us;  // GCRA emission interval T
  std::int64_t tolerance_us; // burst * T
};

struct KeyReply {
  bool admitted = false;
  std::int64_t remaining = 0;  // whole tokens left after the decision
  std::int64_t wait_us = 0;    // until one token is back
  std::int64_t full_in_us = 0; // until the bucket is full
};

enum class Result { kOk, kError, kTimeout };

struct Reply {
  Result result = Result::kError;
  bool allowed = false;
  std::vector<KeyReply> keys;
  Nanos took = 0;
};

// Called on the worker's thread, exactly once per decide() unless cancelled,
// and never from inside decide().
using Callback = void (*)(void* ctx, const Reply& reply);

// The Lua script (exposed for tests).
const std::string& decisionScript();

class RedisStore {
 public:
  // `clock` times each round trip (the store's latency histogram).
  RedisStore(const config::RedisConfig& cfg, int workers, const event::Clock& clock);
  ~RedisStore();
  RedisStore(const RedisStore&) = delete;
  RedisStore& operator=(const RedisStore&) = delete;

  const config::RedisConfig& config() const { return cfg_; }
  // Sends one decision from worker `worker` (its own thread, its `base`).
  // Returns a ticket for cancel().
  std::uint64_t decide(int worker, event_base* base, std::vector<KeyRequest> keys, Callback cb,
                       void* ctx, Nanos now);
  // The request went away: its callback will not be called.
  void cancel(int worker, std::uint64_t ticket);
  // Opens worker `worker`'s connections now (call on that worker's thread),
  // so the first request does not find Redis "down".
  void connectWorker(int worker, event_base* base) { clients(worker, base); }
  // Closes worker `worker`'s connections; call on that worker's thread
  // before its event_base goes away.
  void closeWorker(int worker);

 private:
  struct Pending;
  struct Conn;
  struct WorkerClients;
  static void onReply(redisAsyncContext* ac, void* reply, void* privdata) noexcept;
  static void onScriptLoaded(redisAsyncContext* ac, void* reply, void* privdata) noexcept;
  static void onConnect(const redisAsyncContext* ac, int status);
  static void onDisconnect(const redisAsyncContext* ac, int status);
  static void onTimeout(evutil_socket_t, short, void* arg) noexcept;
  static void onRetry(evutil_socket_t, short, void* arg) noexcept;
  WorkerClients& clients(int worker, event_base* base);
  void closeWorker(WorkerClients& wc);
  void connect(Conn& c);
  bool send(Conn& c, Pending* p, bool by_sha);
  void finish(Pending* p, const Reply& r);

  config::RedisConfig cfg_;
  const event::Clock& clock_;
  std::vector<std::unique_ptr<WorkerClients>> workers_;
};

}  // namespace sluice::store
